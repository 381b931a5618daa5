"""`finetuning worker`: the runpod serverless loop around the handler (worker/handler.py).

The SDK reads its own flags from the command line (`--test_input '{...}'` runs one job and exits, 1 if it failed;
`--rp_serve_api --rp_api_port N` serves the local test API with `POST /runsync`); `finetuning worker` hands them
over as they were given. runpod is an optional extra (`pip install 'finetuning[worker]'`).
"""

from __future__ import annotations

import os
import sys

from ..errors import UserError


def serve(sdk_args: list[str]) -> int:
    """Start the runpod worker with `handler`; returns when the SDK does (it may also exit the process itself)."""
    # The SDK logs at DEBUG by default, and at DEBUG it prints a --test_input job whole, credentials included.
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    try:
        import runpod
    except ImportError:
        raise UserError(
            "worker: the runpod package is not installed; install the worker extra: pip install 'finetuning[worker]'"
        ) from None
    from .handler import handler

    sys.argv = ["finetuning worker", *sdk_args]  # the SDK parses sys.argv
    runpod.serverless.start({"handler": handler})
    return 0
