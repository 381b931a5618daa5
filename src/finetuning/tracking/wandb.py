"""Weights & Biases set-up from the config's `wandb` section: transformers' WandbCallback does the logging."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import MutableMapping

from ..errors import UserError
from .reporting import add_reporter, add_run_name

logger = logging.getLogger(__name__)


def apply_wandb(wandb_conf, training_args: dict, environ: MutableMapping[str, str] | None = None) -> dict:
    """Return training_args with "wandb" in report_to, and set the WANDB_* variables the callback reads."""
    if wandb_conf is None:
        return training_args
    if importlib.util.find_spec("wandb") is None:
        raise UserError("wandb: the wandb section needs the wandb package: pip install wandb")
    environ = os.environ if environ is None else environ  # call time: os.environ can be replaced (see mlflow.py)
    args = add_run_name(add_reporter(dict(training_args), "wandb", "W&B"), wandb_conf.run_name)
    settings = {
        "WANDB_PROJECT": wandb_conf.project,
        "WANDB_ENTITY": wandb_conf.entity,
        "WANDB_RUN_GROUP": wandb_conf.group,
        "WANDB_TAGS": ",".join(wandb_conf.tags) or None,
        "WANDB_WATCH": wandb_conf.watch,
        "WANDB_LOG_MODEL": wandb_conf.log_model,
        "WANDB_MODE": wandb_conf.mode,
    }
    environ.update({key: value for key, value in settings.items() if value is not None})
    logger.info("W&B: project %r (%s)", wandb_conf.project, environ.get("WANDB_MODE", "online"))
    return args


def finish_wandb(failed: bool = False) -> None:
    """Close the W&B run at the end of training, marked failed when training raised (transformers leaves it open
    until the process exits, so a second run in the same process would log into the first, and offline files would
    miss their summary). The library is then torn down: it keeps the settings of its first run in the process
    (WANDB_DIR, mode, ...) and would apply them to the next one."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
    wandb.teardown()
