"""Which checkpoint to resume from (`run_conf.resume_from_checkpoint`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError

logger = logging.getLogger(__name__)


def resolve_resume(setting: bool | str, output_dir: str) -> bool | str | None:
    """false → start fresh; true → the newest checkpoint (error if none); 'auto' → the newest checkpoint if any,
    else start fresh; any other string → that path (error if missing). Decided before any model loads."""
    from transformers.trainer_utils import get_last_checkpoint

    if setting is False:
        return None
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if setting is True:
        if last is None:
            raise UserError(
                f"run_conf.resume_from_checkpoint: true, but {Path(output_dir).resolve()} has no checkpoint; "
                "use 'auto' to resume only when there is one"
            )
        return last
    if setting == "auto":
        if last:
            logger.info("resume_from_checkpoint=auto: resuming from %s", last)
        else:
            logger.info("resume_from_checkpoint=auto: no checkpoint in %s, starting fresh", output_dir)
        return last
    if not Path(setting).is_dir():
        raise UserError(f"run_conf.resume_from_checkpoint: {Path(setting).resolve()}: no such checkpoint directory")
    return setting
