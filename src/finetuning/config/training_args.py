"""Validation of `training_args` against the installed trainer arguments dataclass.

`training_args` stays a plain dict in the config: the trainer arguments class (transformers' `TrainingArguments`,
or TRL's `DPOConfig` for DPO) owns those ~100 options and changes between releases, so we check the dict against
the *installed* class instead of copying its fields. Silogen configs written for transformers 4.x use keys that
no longer exist; those are translated (`legacy_keys.py`) with one notice each, so old configs keep working.

The class comes as a `FieldTable` (`trainer_fields.py`: read from disk, so validation imports no torch) or, in
tests and for other dataclasses, as the class itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from finetuning.config._base import is_number
from finetuning.config.dataclass_check import check_dataclass_kwargs
from finetuning.config.legacy_keys import translate_legacy_keys
from finetuning.config.trainer_fields import FieldTable
from finetuning.errors import did_you_mean

# Set from batchsize_conf by the engine; a user value would silently fight the batch size arithmetic.
TRAINING_ARGS_FORBIDDEN: tuple[str, ...] = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
)


class TrainingArgsError(ValueError):
    """`training_args` problems, each formatted as `training_args.<key>: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class TrainingArgsResult:
    """Translated training args, the notices explaining translations, and a legacy `logging_dir` if one was given."""

    args: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    logging_dir: str | None = None
    overwrite_output_dir: bool = False  # legacy key, consumed by the engine (train.run: fresh start over old outputs)


def default_output_dir() -> str:
    """`$CHECKPOINTS_PATH` or `./checkpoints`."""
    return os.environ.get("CHECKPOINTS_PATH") or "./checkpoints"


def default_logging_dir() -> str:
    """`$LOGS_PATH` or `./logs`."""
    return os.environ.get("LOGS_PATH") or "./logs"


def _table(fields: FieldTable | type) -> FieldTable:
    return fields if isinstance(fields, FieldTable) else FieldTable.from_dataclass(fields)


# Values the trainer accepts (or rejects only once the model has loaded) that train nothing useful: (key, lowest
# allowed, whether the lowest is itself allowed). Steps below 1 are fractions of the total steps in transformers.
_RANGES: tuple[tuple[str, float, bool], ...] = (
    ("learning_rate", 0, False),
    ("warmup_steps", 0, True),
    ("logging_steps", 0, False),
    ("save_steps", 0, False),
    ("eval_steps", 0, False),
    ("max_length", 1, True),
)


def loss_type_problems(args: dict[str, Any], fields: FieldTable | type) -> list[str]:
    """An unknown `loss_type` (TRL itself finds it only mid-training, or never): checked against the documented ones."""
    value = args.get("loss_type")
    choices = _table(fields).loss_types
    if value is None or not choices:
        return []
    problems = []
    for item in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        if item not in choices:
            hint = did_you_mean(str(item), choices) or f"; expected one of {', '.join(choices)}"
            problems.append(f"training_args.loss_type: unknown value {item!r}{hint}")
    return problems


def range_problems(args: dict[str, Any], prefix: str = "training_args") -> list[str]:
    """`prefix.key: must be ...` for each number outside its sensible range (see `_RANGES`)."""
    problems = []
    for key, lowest, inclusive in _RANGES:
        value = args.get(key)
        if not is_number(value):
            continue
        if value < lowest or (value == lowest and not inclusive):
            bound = "greater than or equal to" if inclusive else "greater than"
            problems.append(f"{prefix}.{key}: must be {bound} {lowest}, got {value}")
    return problems


def trl_key_hints(valid: set[str] | dict[str, Any]) -> dict[str, str]:
    """TRL's SFTConfig / DPO dataset keys that people carry over, and where the same setting lives here."""
    from finetuning.config.sft import SFTArguments

    packing = (
        "use sft_args.packing"
        if "packing" in SFTArguments.model_fields
        else "packing is not supported yet (each example is its own sequence)"
    )
    completions = "use sft_args.train_on_completions_only (loss on the assistant's turns only)"
    return {
        "max_length": "use sft_args.max_seq_length",  # DPOConfig / KTOConfig have max_length: never unknown there
        "max_seq_length": "use training_args.max_length" if "max_length" in valid else "use sft_args.max_seq_length",
        "packing": packing,
        "padding_free": packing,
        "completion_only_loss": completions,
        "assistant_only_loss": completions,
        "dataset_text_field": "rows are chat conversations (`messages`), rendered by data_conf.chat_template_name",
    }


# VectorLM's scheduler (train/schedulers.py): its code's spelling, and its docs' (`plataeu`).
PLATEAU_WITH_WARMUP = "plateau-with-warmup"
PLATEAU_SPELLINGS = (PLATEAU_WITH_WARMUP, "plataeu-with-warmup")
# ReduceLROnPlateau settings `lr_scheduler_kwargs` may change, with VectorLM's values (mode is always min: a loss)
PLATEAU_DEFAULTS = {
    "factor": 0.1,
    "patience": 10,
    "threshold": 1e-4,
    "threshold_mode": "rel",
    "cooldown": 0,
    "min_lr": 0.0,
    "eps": 1e-8,
}


def unknown_setting_problem(where: str, key: str, scheduler: str, settings) -> str:
    """`...lr_scheduler_kwargs.<key>: not a setting of <scheduler>` with a did-you-mean, else the settings it has."""
    hint = did_you_mean(str(key), settings) or f"; expected some of {', '.join(settings)}"
    return f"{where}: not a setting of {scheduler}{hint}"


def plateau_problems(args: dict[str, Any]) -> list[str]:
    """plateau-with-warmup steps on the evaluation loss: it needs evaluations, and its kwargs are ReduceLROnPlateau's.
    (Validation data of type NONE with an eval_strategy is refused by the experiment config itself.)"""
    problems = []
    if args.get("eval_strategy") in (None, "no"):
        problems.append(
            f"training_args.lr_scheduler_type: {PLATEAU_WITH_WARMUP} lowers the learning rate when the evaluation "
            "loss stops improving, so it needs evaluations: set training_args.eval_strategy (steps or epoch, with "
            "eval_steps) and validation data"
        )
    kwargs = args.get("lr_scheduler_kwargs") or {}
    if not isinstance(kwargs, dict):
        problems.append(f"training_args.lr_scheduler_kwargs: must be a mapping for {PLATEAU_WITH_WARMUP}")
        return problems
    for key, value in kwargs.items():
        where = f"training_args.lr_scheduler_kwargs.{key}"
        if key not in PLATEAU_DEFAULTS:
            problems.append(unknown_setting_problem(where, key, PLATEAU_WITH_WARMUP, PLATEAU_DEFAULTS))
        elif key == "threshold_mode":
            if value not in ("rel", "abs"):
                problems.append(f"{where}: must be rel or abs, got {value!r}")
        elif not is_number(value) or value < 0 or (key in ("patience", "cooldown") and not isinstance(value, int)):
            kind = "a whole number" if key in ("patience", "cooldown") else "a number"
            problems.append(f"{where}: must be {kind} >= 0, got {value!r}")
        elif key == "factor" and value >= 1:
            problems.append(f"{where}: must be below 1 (the rate is multiplied by it), got {value}")
    return problems


# torch's OneCycleLR over the run (train/schedulers.py): max_lr is training_args.learning_rate and total_steps the
# run's optimizer steps; pct_start defaults to the warmup's share of them. What lr_scheduler_kwargs may set, as
# value kinds (see `_kind_problem`).
ONE_CYCLE = "one_cycle"
ONE_CYCLE_SETTINGS = {
    "div_factor": "positive",  # initial rate = learning_rate / div_factor (torch default 25; axolotl lr_div_factor)
    "final_div_factor": "positive",  # final rate = initial rate / final_div_factor (torch default 1e4)
    "pct_start": "fraction",
    "anneal_strategy": ("cos", "linear"),
    "three_phase": "bool",
    "cycle_momentum": "bool",  # torch default true: Adam's beta1 cycles between max_momentum and base_momentum
    "base_momentum": "fraction",
    "max_momentum": "fraction",
}
# `cosine` with these lr_scheduler_kwargs is built by the engine (axolotl's cosine_min_lr_ratio,
# cosine_constant_lr_ratio, lr_quadratic_warmup); num_cycles is the library cosine's own setting.
COSINE_EXTENSIONS = ("min_lr_ratio", "constant_lr_ratio", "quadratic_warmup")
COSINE_SETTINGS = {
    "num_cycles": "positive",
    "min_lr_ratio": "fraction",
    "constant_lr_ratio": "fraction",
    "quadratic_warmup": "bool",
}
# Schedulers the engine builds itself, and the library's name that stands in for each while the installed
# TrainingArguments checks the other arguments (and while the trainer arguments object is built).
ENGINE_SCHEDULERS = {**dict.fromkeys(PLATEAU_SPELLINGS, "reduce_lr_on_plateau"), ONE_CYCLE: "cosine"}


def _kind_problem(where: str, value: Any, kind) -> str | None:
    """A setting's value against its kind: a tuple of choices, bool, positive (> 0) or fraction (0 to 1)."""
    if isinstance(kind, tuple):
        return None if value in kind else f"{where}: must be one of {', '.join(kind)}, got {value!r}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{where}: must be true or false, got {value!r}"
    if kind == "positive":
        return None if is_number(value) and value > 0 else f"{where}: must be a number greater than 0, got {value!r}"
    if is_number(value) and 0 <= value <= 1:
        return None
    return f"{where}: must be a number from 0 to 1, got {value!r}"


def engine_scheduler_problems(args: dict[str, Any]) -> list[str]:
    """lr_scheduler_kwargs of one_cycle and cosine checked key by key (the library would fail mid-run, or never);
    the cosine extensions given to another scheduler are refused (it would never read them)."""
    name = args.get("lr_scheduler_type", "linear")
    kwargs = args.get("lr_scheduler_kwargs") or {}
    if name in PLATEAU_SPELLINGS:
        return plateau_problems(args)
    if name not in (ONE_CYCLE, "cosine"):
        stray = [key for key in COSINE_EXTENSIONS if isinstance(kwargs, dict) and key in kwargs]
        return [
            f"training_args.lr_scheduler_kwargs.{key}: applies to lr_scheduler_type cosine, not {name}" for key in stray
        ]
    if not isinstance(kwargs, dict):
        return [] if name == "cosine" else [f"training_args.lr_scheduler_kwargs: must be a mapping for {ONE_CYCLE}"]
    settings = ONE_CYCLE_SETTINGS if name == ONE_CYCLE else COSINE_SETTINGS
    problems = []
    for key, value in kwargs.items():
        where = f"training_args.lr_scheduler_kwargs.{key}"
        if key not in settings:
            problems.append(unknown_setting_problem(where, key, name, settings))
        elif (problem := _kind_problem(where, value, settings[key])) is not None:
            problems.append(problem)
    return problems


# YAML 1.1 reads an unquoted `no` as false; for these keys the user meant the strategy "no".
_NO_STRATEGY_KEYS = ("save_strategy", "eval_strategy", "evaluation_strategy", "logging_strategy", "hub_strategy")


def process_training_args(args: dict[str, Any], fields: FieldTable | type) -> TrainingArgsResult:
    """Translate legacy keys, check keys and value types, fill defaults. Raises `TrainingArgsError`."""
    table = _table(fields)
    valid = table.init_fields
    translation = translate_legacy_keys(args, valid)
    args, problems = translation.args, translation.problems
    for key in TRAINING_ARGS_FORBIDDEN:
        if key in args:
            args.pop(key)
            problems.append(f"training_args.{key}: set by the engine from batchsize_conf; use batchsize_conf instead")
    for key in _NO_STRATEGY_KEYS:
        if args.get(key) is False:
            args[key] = "no"
    # plateau-with-warmup and one_cycle are ours, not the installed library's: checked as their stand-ins there
    # (train/schedulers.py)
    scheduler = args.get("lr_scheduler_type")
    stand_in = ENGINE_SCHEDULERS.get(scheduler) if isinstance(scheduler, str) else None
    if stand_in is not None:
        args["lr_scheduler_type"] = stand_in
    # `fsdp: true` (or a list of FSDP words) is how transformers documents turning FSDP on, though its field is still
    # typed `str`: checked by train/fsdp.fsdp_arguments instead
    fsdp = args.pop("fsdp") if isinstance(args.get("fsdp"), (bool, list)) else None
    problems.extend(check_dataclass_kwargs(args, table, "training_args", trl_key_hints(valid)))
    if fsdp is not None:
        args["fsdp"] = fsdp
    if stand_in is not None:
        args["lr_scheduler_type"] = PLATEAU_WITH_WARMUP if scheduler in PLATEAU_SPELLINGS else scheduler
    problems.extend(engine_scheduler_problems(args))
    problems.extend(range_problems(args))
    problems.extend(loss_type_problems(args, table))
    for key in [k for k in args if k not in valid]:
        args.pop(key)
    if problems:
        raise TrainingArgsError(problems)
    if args.get("output_dir") is None:
        args["output_dir"] = default_output_dir()
    return TrainingArgsResult(args, translation.notices, translation.logging_dir, translation.overwrite_output_dir)


def validate_training_args(args: dict[str, Any], fields: FieldTable | type) -> tuple[dict[str, Any], list[str]]:
    """Validate and translate `training_args` for a trainer arguments class (TrainingArguments or trl.DPOConfig).

    Returns the translated dict and the notices. A legacy `logging_dir` is removed from the dict; use
    `process_training_args` to get it. Raises `TrainingArgsError` (a ValueError) listing every problem.
    """
    result = process_training_args(args, fields)
    return result.args, result.notices
