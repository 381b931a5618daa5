"""`run_conf.determinism`: reproducibility beyond the seed, as the Silogen engine's `no | half | full`.

The seed alone leaves GPU kernels free to pick non-deterministic algorithms (atomics in scatter/index ops, cuDNN
autotuning), so two runs of one config drift apart. `half` asks torch to prefer deterministic implementations and
only warns where there is none; `full` allows nothing else: an operation without one fails the run, which is the
point (a result that claims to be reproducible must be). cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA
initialises, so this runs before any model is loaded.

What is changed in torch is remembered and put back when the run ends (`deterministic`, entered by the run's
lifecycle, train/lifecycle.py), also when it raises, so a later run in the same process (tests, notebooks, a worker
running one job after another) starts from the user's own settings; the environment variables are restored with
all the others the run set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

# The workspace size cuBLAS needs to be deterministic (https://docs.nvidia.com/cuda/cublas/#results-reproducibility);
# ":4096:8" is the faster of the two documented settings.
CUBLAS_WORKSPACE = ":4096:8"
LEVELS = ("no", "half", "full")


def _apply(level: str) -> dict | None:
    """Set torch (and, for `full`, the environment) for the `run_conf.determinism` level; returns torch's settings
    as they were, or None when the level (`no`) changes nothing."""
    if level not in LEVELS:  # the config validates this; a programming error otherwise
        raise ValueError(f"determinism must be one of {LEVELS}, got {level!r}")
    if level == "no":
        return None
    import torch

    before = {
        "enabled": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if level == "full":
        _set_environment(torch)
    torch.use_deterministic_algorithms(True, warn_only=level == "half")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False  # autotuning picks kernels by timing, which differs between runs
    logger.info(
        "determinism: %s (torch deterministic algorithms%s)", level, ", warnings only" if level == "half" else ""
    )
    return before


def _set_environment(torch) -> None:
    """What transformers' `full_determinism` sets, without CUDA_LAUNCH_BLOCKING (it serialises every kernel launch
    and is not needed for determinism since CUDA 10.2). A value the user set is kept."""
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_initialized():
        logger.warning(
            "run_conf.determinism: full, but CUDA was initialised before CUBLAS_WORKSPACE_CONFIG could be set; "
            "cuBLAS may not be deterministic (export CUBLAS_WORKSPACE_CONFIG=%s before starting)",
            CUBLAS_WORKSPACE,
        )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    os.environ.setdefault("FLASH_ATTENTION_DETERMINISTIC", "1")  # flash-attn's backward pass
    os.environ.setdefault("HCCL_DETERMINISTIC", "1")  # Ascend NPUs


@contextmanager
def deterministic(level: str) -> Iterator[None]:
    """`run_conf.determinism` for the duration of the block; torch's settings are back as before however it ends."""
    before = _apply(level)
    try:
        yield
    finally:
        if before is not None:
            _restore(before)


def _restore(before: dict) -> None:
    import torch

    torch.use_deterministic_algorithms(before["enabled"], warn_only=before["warn_only"])
    torch.backends.cudnn.deterministic = before["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
