"""Which process this is in a multi-process launch (torchrun / accelerate set WORLD_SIZE and RANK): one place reads
them, before torch.distributed is initialised."""

from __future__ import annotations

import os


def num_processes() -> int:
    """Processes launched for this run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a multi-process run (or the only process): the one that writes shared files and speaks."""
    return int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun / accelerate set LOCAL_RANK): the device it owns."""
    return int(os.environ.get("LOCAL_RANK", "0"))
