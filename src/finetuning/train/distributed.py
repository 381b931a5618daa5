"""Which process this is in a multi-process launch (torchrun / accelerate set WORLD_SIZE and RANK): one place reads
them, before torch.distributed is initialised. And what keeps N processes training exactly as one: the two defaults
that equivalence rests on, and a warning when a multi-process config turns one off."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def num_processes() -> int:
    """Processes launched for this run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a multi-process run (or the only process): the one that writes shared files and speaks."""
    return int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun / accelerate set LOCAL_RANK): the device it owns."""
    return int(os.environ.get("LOCAL_RANK", "0"))


# The two TrainingArguments defaults that make N processes train exactly as one (platform-facts.md, "DDP = single
# process, bit for bit"): each key, what turning it off changes.
SINGLE_PROCESS_EQUIVALENCE = {
    "average_tokens_across_devices": "each process averages its loss over its own tokens, so a step's loss and "
    "gradient weigh the processes' tokens differently",
    "accelerator_config.use_seedable_sampler": "the processes draw other micro-batches than one process would",
}


def single_process_differences(training_args: dict) -> list[str]:
    """The equivalence keys `training_args` turns off (both are on by default); a multi-process run with one of them
    off trains differently from the same config on one process. Users may want that, so it is a warning, not a
    problem: `warn_if_unlike_single_process`."""
    accelerator_config = _as_mapping(training_args.get("accelerator_config"))
    values = {
        "average_tokens_across_devices": training_args.get("average_tokens_across_devices", True),
        "accelerator_config.use_seedable_sampler": accelerator_config.get("use_seedable_sampler", True),
    }
    return [key for key, value in values.items() if str(value).strip().lower() in ("false", "0", "no")]


def warn_if_unlike_single_process(training_args: dict) -> None:
    """One warning per key that makes this multi-process run differ from a single-process run of the same config
    (logged by every process; the others' logs show errors only)."""
    if num_processes() == 1:
        return
    for key in single_process_differences(training_args):
        logger.warning(
            "training_args.%s: false: this %d-process run will not train like the same config on one process "
            "(%s); remove the key to keep the default (true) if that was not the intent",
            key,
            num_processes(),
            SINGLE_PROCESS_EQUIVALENCE[key],
        )


def _as_mapping(value) -> dict:
    """`accelerator_config` as given: a mapping, a JSON string or the path of a JSON file (transformers accepts all
    three; an unreadable one is transformers' error to report, not this check's)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            text = value if value.lstrip().startswith("{") else Path(value).expanduser().read_text(encoding="utf-8")
            loaded = json.loads(text)
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}
