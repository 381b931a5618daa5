"""VectorLM's W&B keys: `enable_wandb_logging` and `wandb_config` (keyword arguments of `wandb.init`).

Here transformers' W&B callback starts the run, from the native `wandb` section (project, run name, entity, group,
tags, mode); the other `wandb.init` arguments cannot reach it, and each is refused with what to use instead (most
have a WANDB_* environment variable that wandb reads itself).
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.builder import Builder, Key, section_key

ENABLED = "enable_wandb_logging"
# wandb.init argument → the environment variable wandb reads for it.
_ENVIRONMENT = {
    "notes": "WANDB_NOTES",
    "job_type": "WANDB_JOB_TYPE",
    "dir": "WANDB_DIR",
    "id": "WANDB_RUN_ID",
    "resume": "WANDB_RESUME",
    "save_code": "WANDB_SAVE_CODE",
    "anonymous": "WANDB_ANONYMOUS",
}
_NO_WAY = (
    "reinit",
    "force",
    "allow_val_change",
    "settings",
    "magic",
    "monitor_gym",
    "tensorboard",
    "sync_tensorboard",
    "config_exclude_keys",
    "config_include_keys",
    "resume_from",
    "fork_from",
)
# wandb_config key → native `wandb` key
_TRANSLATED = {
    "project": "project",
    "name": "run_name",
    "entity": "entity",
    "group": "group",
    "tags": "tags",
    "mode": "mode",
}


def _enabled(b: Builder, path: str, value: Any) -> None:
    if not b.boolean(path, value):
        return
    b.maps("wandb", path)  # e.g. the wandb package missing when the run starts
    if not b.has("wandb_config.project"):
        b.problem("wandb_config.project", f"required when {ENABLED} is true (the W&B project the run logs to)")


def _wandb_config(b: Builder, path: str, value: Any) -> None:
    if b.get(ENABLED) is not True and value:
        b.notice(path, f"not used: {ENABLED} is not true")


def _to_wandb(native: str):
    def handle(b: Builder, path: str, value: Any) -> None:
        if b.get(ENABLED) is True:
            b.set(f"wandb.{native}", value, source=path)

    return handle


WANDB_KEYS: tuple[Key, ...] = (
    Key(ENABLED, "translated", "the native `wandb` section, from wandb_config (false: no W&B)", _enabled),
    section_key("wandb_config", _wandb_config),
    *(
        Key(f"wandb_config.{key}", "translated", f"`wandb.{native}`", _to_wandb(native))
        for key, native in _TRANSLATED.items()
    ),
    Key(
        "wandb_config.config",
        "refused",
        "the run's W&B config is the resolved training config, logged by the trainer; drop it",
    ),
    *(
        Key(f"wandb_config.{key}", "refused", f"the trainer starts the W&B run; set {variable} in the environment")
        for key, variable in _ENVIRONMENT.items()
    ),
    *(
        Key(f"wandb_config.{key}", "refused", f"the trainer starts the W&B run; wandb.init's {key} cannot reach it")
        for key in _NO_WAY
    ),
)
