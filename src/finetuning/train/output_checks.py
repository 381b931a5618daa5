"""The output directory before a run: writable (a real file is written and removed, nothing is created), and on a
file system with room for one checkpoint (train/checkpoint_size.py estimates it)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..paths import resolve_user_path
from .checkpoint_size import checkpoint_size_estimate, format_bytes

logger = logging.getLogger(__name__)

OUTPUT_KEY = "training_args.output_dir"


def _nearest_existing(path: Path) -> Path:
    """The path itself, or its closest ancestor that exists (where a missing output dir would be created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _write_probe(directory: Path) -> str | None:
    """Create and remove a real file in `directory`; the reason it failed, or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".finetuning-write-test-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_output_dir(output_dir: str) -> list[str]:
    """An existing output dir must be a writable directory; a missing one must be creatable (nothing is created)."""
    path = resolve_user_path(output_dir)
    if path.exists():
        if not path.is_dir():
            return [f"{OUTPUT_KEY}: {path}: exists and is not a directory"]
        reason = _write_probe(path)
        return [f"{OUTPUT_KEY}: {path}: not writable ({reason})"] if reason else []
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        return [f"{OUTPUT_KEY}: {path}: cannot be created, {ancestor} is not a directory"]
    reason = _write_probe(ancestor)
    if reason:
        return [f"{OUTPUT_KEY}: {path}: not writable (cannot be created in {ancestor}: {reason})"]
    return []


def saves_checkpoints(training_args: dict) -> bool:
    """Whether the run writes step checkpoints (else only the final model takes disk space)."""
    return training_args.get("save_strategy", "steps") not in ("no", False)


def check_disk_space(cfg) -> list[str]:
    """Free space on the output dir's file system against one checkpoint (the final model alone without
    checkpoints)."""
    estimate = checkpoint_size_estimate(cfg)
    if estimate is None:
        return []
    needed = estimate.total_bytes if saves_checkpoints(cfg.training_args) else estimate.weights_bytes
    what = "a checkpoint" if saves_checkpoints(cfg.training_args) else "the final model"
    path = resolve_user_path(cfg.training_args["output_dir"])
    try:
        free = shutil.disk_usage(_nearest_existing(path)).free
    except OSError as error:
        logger.info("free disk space of %s unknown (%s): not checked", path, error)
        return []
    if needed > free:
        return [f"{OUTPUT_KEY}: {path}: about {format_bytes(needed)} needed for {what}, {format_bytes(free)} free"]
    return []
