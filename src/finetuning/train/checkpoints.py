"""Which checkpoint to resume from (`run_conf.resume_from_checkpoint`)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def resolve_resume(setting: bool | str, output_dir: str) -> bool | str | None:
    """false → start fresh; true → let the Trainer find the newest checkpoint (error if none);
    'auto' → the newest checkpoint if any, else start fresh; any other string → that path."""
    from transformers.trainer_utils import get_last_checkpoint

    if setting is False:
        return None
    if setting is True:
        return True
    if setting == "auto":
        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last:
            logger.info("resume_from_checkpoint=auto: resuming from %s", last)
        else:
            logger.info("resume_from_checkpoint=auto: no checkpoint in %s, starting fresh", output_dir)
        return last
    return setting
