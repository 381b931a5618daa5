"""`training_args` keys of transformers 4.x that Silogen configs still use: one translator per key.

A key is translated only when the installed trainer arguments class no longer has it (if it still exists, it is
passed through). Each translator takes the value given, and either rewrites it into today's key(s) with a notice,
or records a problem; two keys (`overwrite_output_dir`, `logging_dir`) are consumed by the engine instead. The
description of each key is also what `finetuning schema` shows for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finetuning.config._base import is_number


@dataclass
class Translation:
    """The args being translated, and what the translators found."""

    args: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    logging_dir: str | None = None
    overwrite_output_dir: bool = False


def _warmup_ratio(ratio: Any, t: Translation) -> None:
    if "warmup_steps" in t.args:
        t.problems.append("training_args.warmup_ratio: both warmup_ratio and warmup_steps are given; use warmup_steps")
    elif not is_number(ratio) or not 0 <= ratio < 1:
        t.problems.append(f"training_args.warmup_ratio: must be a number in [0, 1), got {ratio!r}")
    else:
        t.args["warmup_steps"] = ratio
        t.notices.append(
            f"training_args.warmup_ratio: {ratio} translated to warmup_steps: {ratio} "
            "(a value below 1 is a fraction of the total steps)"
        )


def _group_by_length(value: Any, t: Translation) -> None:
    if value is False:
        t.notices.append("training_args.group_by_length: false dropped (random sampling is the default)")
    elif value is not True:
        t.problems.append(f"training_args.group_by_length: must be a boolean, got {value!r}")
    elif (current := t.args.get("train_sampling_strategy")) not in (None, "group_by_length"):
        t.problems.append(
            "training_args.group_by_length: conflicts with train_sampling_strategy: "
            f"{current!r}; use train_sampling_strategy only"
        )
    else:
        t.args["train_sampling_strategy"] = "group_by_length"
        t.notices.append("training_args.group_by_length: true translated to train_sampling_strategy: group_by_length")


def _evaluation_strategy(value: Any, t: Translation) -> None:
    if "eval_strategy" in t.args and t.args["eval_strategy"] != value:
        t.problems.append("training_args.evaluation_strategy: conflicts with eval_strategy; use eval_strategy only")
    else:
        t.args["eval_strategy"] = value
        t.notices.append(f"training_args.evaluation_strategy: renamed to eval_strategy: {value}")


def _overwrite_output_dir(value: Any, t: Translation) -> None:
    if not isinstance(value, bool):
        t.problems.append(f"training_args.overwrite_output_dir: must be true or false, got {value!r}")
        return
    t.overwrite_output_dir = value
    if value:
        t.notices.append(
            "training_args.overwrite_output_dir: true → a fresh start (resume_from_checkpoint: false, or nothing "
            "to resume) first deletes an earlier run's checkpoints, final model and report in output_dir"
        )


def _logging_dir(value: Any, t: Translation) -> None:
    if value is not None and not isinstance(value, str):
        t.problems.append(f"training_args.logging_dir: must be a string, got {value!r}")
        return
    t.logging_dir = value
    t.notices.append(
        "training_args.logging_dir: no longer a TrainingArguments option; "
        "the engine uses it as the TensorBoard log directory"
    )


def _save_safetensors(value: Any, t: Translation) -> None:
    if value is True:
        t.notices.append("training_args.save_safetensors: true dropped (checkpoints are always safetensors)")
    else:
        t.problems.append(
            "training_args.save_safetensors: only true is supported; checkpoints are always saved as safetensors"
        )


@dataclass(frozen=True)
class LegacyKey:
    translate: Callable[[Any, Translation], None]
    description: str  # for the schema and the config reference


# In the order they are applied (and listed in the reference).
LEGACY_KEYS: dict[str, LegacyKey] = {
    "warmup_ratio": LegacyKey(
        _warmup_ratio, "Legacy: translated to warmup_steps (a value below 1 is a fraction of the total steps)."
    ),
    "group_by_length": LegacyKey(
        _group_by_length, "Legacy: true is translated to train_sampling_strategy: group_by_length."
    ),
    "evaluation_strategy": LegacyKey(_evaluation_strategy, "Legacy: renamed to eval_strategy."),
    "overwrite_output_dir": LegacyKey(
        _overwrite_output_dir, "Legacy: true lets a fresh start replace an earlier run's outputs in output_dir."
    ),
    "logging_dir": LegacyKey(_logging_dir, "Legacy: the TensorBoard log directory (default $LOGS_PATH or ./logs)."),
    "save_safetensors": LegacyKey(_save_safetensors, "Legacy: only true; checkpoints are always safetensors."),
}


def translate_legacy_keys(args: dict[str, Any], valid: set[str] | dict[str, Any]) -> Translation:
    """Apply the translator of every legacy key in `args` that the installed class (`valid` keys) no longer has."""
    translation = Translation(dict(args))
    for key, legacy in LEGACY_KEYS.items():
        if key in translation.args and key not in valid:
            legacy.translate(translation.args.pop(key), translation)
    return translation
