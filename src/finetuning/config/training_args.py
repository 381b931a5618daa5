"""Validation of `training_args` against the installed trainer arguments dataclass.

`training_args` stays a plain dict in the config: the trainer arguments class (transformers' `TrainingArguments`,
or TRL's `DPOConfig` for DPO) owns those ~100 options and changes between releases, so we check the dict against
the *installed* class instead of copying its fields. Silogen configs written for transformers 4.x use keys that
no longer exist; those are translated here with one notice each, so old configs keep working.

The dataclass is passed in (and imported lazily by the caller) because importing transformers imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import functools
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

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


def _init_fields(dataclass_type: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(dataclass_type) if f.init and not f.name.startswith("_")]


def _lenient(annotation: Any) -> Any:
    """`list[X]` also accepts a single `X`: the dataclasses wrap a single value in `__post_init__`
    (e.g. DPOConfig `loss_type: sigmoid`), and Silogen configs rely on that."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and len(args) == 1:
        return annotation | args[0]
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return functools.reduce(lambda a, b: a | b, [_lenient(a) for a in args])
    return annotation


@functools.lru_cache(maxsize=8)
def _type_checker(dataclass_type: type) -> type[BaseModel]:
    """A pydantic model with the dataclass' field annotations, all optional, used only to type-check values.

    `TrainingArguments.__post_init__` is deliberately not run: it touches devices and distributed state.
    """
    try:
        hints = typing.get_type_hints(dataclass_type)
    except Exception:  # unresolvable forward references: check what can be resolved
        hints = {}
    definitions: dict[str, Any] = {}
    for f in _init_fields(dataclass_type):
        annotation = hints.get(f.name, f.type)
        if isinstance(annotation, str):
            annotation = Any
        with contextlib.suppress(TypeError):  # a member that does not support `|`
            annotation = _lenient(annotation)
        definitions[f.name] = (annotation, None)
    config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")
    try:
        return create_model(f"{dataclass_type.__name__}Check", __config__=config, **definitions)
    except Exception:
        # One annotation pydantic cannot handle should not disable all checks: drop just the bad ones.
        good: dict[str, Any] = {}
        for name, definition in definitions.items():
            try:
                create_model("Probe", __config__=config, **{name: definition})
                good[name] = definition
            except Exception:
                good[name] = (Any, None)
        return create_model(f"{dataclass_type.__name__}Check", __config__=config, **good)


@functools.lru_cache(maxsize=8)
def _enum_fields(dataclass_type: type) -> dict[str, tuple[str, ...]]:
    """Fields typed `SomeEnum | str`: `__post_init__` converts the string, so only the enum's values work."""
    try:
        hints = typing.get_type_hints(dataclass_type)
    except Exception:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name, annotation in hints.items():
        enums = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, enum.Enum)]
        if len(enums) == 1:
            out[name] = tuple(str(m.value) for m in enums[0])
    return out


@functools.lru_cache(maxsize=8)
def _number_fields(dataclass_type: type) -> frozenset[str]:
    """Fields typed int / float (possibly Optional): pydantic would read true / false there as 1 / 0."""
    try:
        hints = typing.get_type_hints(dataclass_type)
    except Exception:
        return frozenset()
    names = set()
    for name, annotation in hints.items():
        members = [m for m in (typing.get_args(annotation) or (annotation,)) if m is not type(None)]
        if members and all(member in (int, float) for member in members):
            names.add(name)
    return frozenset(names)


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


@functools.lru_cache(maxsize=8)
def documented_loss_types(dataclass_type: type) -> tuple[str, ...]:
    """The `loss_type` values a TRL config documents (DPOConfig in the field's help, KTOConfig in the class
    docstring); empty when it documents none. TRL keeps loss types as plain strings and rejects an unknown one only
    in the middle of the first training step (DPO) or not at all (KTO trains with an undefined loss)."""
    field_ = next((f for f in dataclasses.fields(dataclass_type) if f.name == "loss_type"), None)
    if field_ is None:
        return ()
    found = re.findall(r"`'([\w-]+)'`", field_.metadata.get("help", ""))
    if not found and "loss_type (" in (dataclass_type.__doc__ or ""):
        section = re.split(r"\n\s*\w+ \(`", dataclass_type.__doc__.split("loss_type (", 1)[1], maxsplit=1)[0]
        found = re.findall(r'`"([\w-]+)"`', section)
    return tuple(dict.fromkeys(found))


def loss_type_problems(args: dict[str, Any], dataclass_type: type) -> list[str]:
    value = args.get("loss_type")
    choices = documented_loss_types(dataclass_type)
    if value is None or not choices:
        return []
    problems = []
    for item in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        if item not in choices:
            hint = _suggest(str(item), choices) or f"; expected one of {', '.join(choices)}"
            problems.append(f"training_args.loss_type: unknown value {item!r}{hint}")
    return problems


def range_problems(args: dict[str, Any], prefix: str = "training_args") -> list[str]:
    """`prefix.key: must be ...` for each number outside its sensible range (see `_RANGES`)."""
    problems = []
    for key, lowest, inclusive in _RANGES:
        value = args.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if value < lowest or (value == lowest and not inclusive):
            bound = "greater than or equal to" if inclusive else "greater than"
            problems.append(f"{prefix}.{key}: must be {bound} {lowest}, got {value}")
    return problems


def merge_alternatives(lines: list[str], given: dict[str, str] | None = None) -> list[str]:
    """Join `path: must be A` and `path: must be B` (one line per union member tried) into `must be A or B`;
    `given` (path → the value shown) then ends such a line with `, got VALUE`, once."""
    merged: dict[str, list[str]] = {}
    order: list[str] = []
    for line in lines:
        path, sep, message = line.partition(": must be ")
        key = path if sep else line
        if key not in merged:
            merged[key] = []
            order.append(key)
        if sep and message not in merged[key]:
            merged[key].append(message)
    given = given or {}
    return [
        f"{key}: must be {' or '.join(merged[key])}" + (f", got {given[key]}" if key in given else "")
        if merged[key]
        else key
        for key in order
    ]


# pydantic's explanations of a failed parse; the value given is shown instead (see `shown_input`).
PARSER_NOISE = (
    ", unable to interpret input",
    ", unable to parse string as an integer",
    ", unable to parse string as a number",
    ", got a number with a fractional part",
)
# Errors where the value given helps ("must be a valid integer, got 'eight'"); range errors quote the bound instead.
_SHOWS_INPUT = ("literal_error", "int_from_float", "enum", "model_type", "dict_type")


def shown_input(err: dict[str, Any], secret: bool = False) -> str | None:
    """The value of a type error as the user wrote it (YAML spelling), or None when it would not help."""
    kind, value = err["type"], err.get("input")
    if secret or not (kind.endswith(("_parsing", "_type")) or kind in _SHOWS_INPUT):
        return None
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if not isinstance(value, (str, int, float)):
        return None
    return repr(value) if len(repr(value)) <= 60 else None


def clean_message(msg: str) -> str:
    """pydantic's wording → ours: `must be ...`, without the parser's explanations."""
    for noise in PARSER_NOISE:
        msg = msg.replace(noise, "")
    return "must be " + msg[len("Input should be ") :] if msg.startswith("Input should be ") else msg


def _suggest(key: str, names: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _trl_key_hints() -> dict[str, str]:
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
        "max_seq_length": "use sft_args.max_seq_length",
        "packing": packing,
        "padding_free": packing,
        "completion_only_loss": completions,
        "assistant_only_loss": completions,
        "dataset_text_field": "rows are chat conversations (`messages`), rendered by data_conf.chat_template_name",
    }


def _unknown_key(key: str, valid: set[str], prefix: str) -> str:
    """`unknown key`, with where the setting lives here (a TRL-style key) or a did-you-mean."""
    hint = _trl_key_hints().get(key) if prefix == "training_args" else None
    if hint is not None and key == "max_seq_length" and "max_length" in valid:
        hint = "use training_args.max_length"
    return f"unknown key; {hint}" if hint is not None else f"unknown key{_suggest(key, valid)}"


def _format_type_error(err: dict[str, Any], prefix: str) -> str:
    # loc[0] is the key; deeper parts are union member names or list indices, not useful to the user.
    return f"{prefix}.{err['loc'][0]}: {clean_message(err['msg'])}"


# YAML 1.1 reads an unquoted `no` as false; for these keys the user meant the strategy "no".
_NO_STRATEGY_KEYS = ("save_strategy", "eval_strategy", "evaluation_strategy", "logging_strategy", "hub_strategy")


def check_dataclass_kwargs(args: dict[str, Any], dataclass_type: type, prefix: str) -> list[str]:
    """Problems with `args` as keyword arguments of `dataclass_type` (unknown keys with a did-you-mean, enum values,
    value types), each as `prefix.key: message`. Coerces numbers that YAML left as strings, in place."""
    valid = {f.name for f in _init_fields(dataclass_type)}
    problems = [f"{prefix}.{key}: {_unknown_key(str(key), valid, prefix)}" for key in args if key not in valid]
    known = {key: value for key, value in args.items() if key in valid}
    numbers = _number_fields(dataclass_type)
    for key in [key for key, value in known.items() if isinstance(value, bool) and key in numbers]:
        problems.append(f"{prefix}.{key}: must be a number, got {str(known.pop(key)).lower()}")
    for key, choices in _enum_fields(dataclass_type).items():
        value = known.get(key)
        if isinstance(value, str) and value not in choices:
            hint = _suggest(value, choices) or f"; expected one of {', '.join(choices)}"
            problems.append(f"{prefix}.{key}: unknown value '{value}'{hint}")
    try:
        checked = _type_checker(dataclass_type).model_validate(known)
    except ValidationError as exc:
        errors = exc.errors()
        given = {f"{prefix}.{err['loc'][0]}": shown for err in errors if (shown := shown_input(err)) is not None}
        problems.extend(merge_alternatives([_format_type_error(err, prefix) for err in errors], given))
    else:
        for key, value in known.items():
            coerced = getattr(checked, key)
            # YAML reads `1e-4` as a string; hand the library the number pydantic accepted.
            if isinstance(value, str) and isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
                args[key] = coerced
    return problems


def process_training_args(args: dict[str, Any], dataclass_type: type) -> TrainingArgsResult:
    """Translate legacy keys, check keys and value types, fill defaults. Raises `TrainingArgsError`."""
    valid = {f.name for f in _init_fields(dataclass_type)}
    args = dict(args)
    problems: list[str] = []
    notices: list[str] = []
    logging_dir: str | None = None
    overwrite_output_dir = False

    def legacy(key: str) -> bool:
        # Only translate a key the installed library no longer has; if it still exists, pass it through.
        return key in args and key not in valid

    if legacy("warmup_ratio"):
        ratio = args.pop("warmup_ratio")
        if "warmup_steps" in args:
            problems.append(
                "training_args.warmup_ratio: both warmup_ratio and warmup_steps are given; use warmup_steps"
            )
        elif not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < 1:
            problems.append(f"training_args.warmup_ratio: must be a number in [0, 1), got {ratio!r}")
        else:
            args["warmup_steps"] = ratio
            notices.append(
                f"training_args.warmup_ratio: {ratio} translated to warmup_steps: {ratio} "
                "(a value below 1 is a fraction of the total steps)"
            )
    if legacy("group_by_length"):
        value = args.pop("group_by_length")
        if value is True:
            current = args.get("train_sampling_strategy")
            if current not in (None, "group_by_length"):
                problems.append(
                    "training_args.group_by_length: conflicts with train_sampling_strategy: "
                    f"{current!r}; use train_sampling_strategy only"
                )
            else:
                args["train_sampling_strategy"] = "group_by_length"
                notices.append(
                    "training_args.group_by_length: true translated to train_sampling_strategy: group_by_length"
                )
        elif value is False:
            notices.append("training_args.group_by_length: false dropped (random sampling is the default)")
        else:
            problems.append(f"training_args.group_by_length: must be a boolean, got {value!r}")
    if legacy("evaluation_strategy"):
        value = args.pop("evaluation_strategy")
        if "eval_strategy" in args and args["eval_strategy"] != value:
            problems.append("training_args.evaluation_strategy: conflicts with eval_strategy; use eval_strategy only")
        else:
            args["eval_strategy"] = value
            notices.append(f"training_args.evaluation_strategy: renamed to eval_strategy: {value}")
    if legacy("overwrite_output_dir"):
        overwrite_output_dir = args.pop("overwrite_output_dir")
        if not isinstance(overwrite_output_dir, bool):
            problems.append(f"training_args.overwrite_output_dir: must be true or false, got {overwrite_output_dir!r}")
            overwrite_output_dir = False
        elif overwrite_output_dir:
            notices.append(
                "training_args.overwrite_output_dir: true → a fresh start (resume_from_checkpoint: false, or nothing "
                "to resume) first deletes an earlier run's checkpoints, final model and report in output_dir"
            )
    if legacy("logging_dir"):
        logging_dir = args.pop("logging_dir")
        if logging_dir is not None and not isinstance(logging_dir, str):
            problems.append(f"training_args.logging_dir: must be a string, got {logging_dir!r}")
            logging_dir = None
        else:
            notices.append(
                "training_args.logging_dir: no longer a TrainingArguments option; "
                "the engine uses it as the TensorBoard log directory"
            )
    if legacy("save_safetensors"):
        value = args.pop("save_safetensors")
        if value is True:
            notices.append("training_args.save_safetensors: true dropped (checkpoints are always safetensors)")
        else:
            problems.append(
                "training_args.save_safetensors: only true is supported; checkpoints are always saved as safetensors"
            )

    for key in TRAINING_ARGS_FORBIDDEN:
        if key in args:
            args.pop(key)
            problems.append(f"training_args.{key}: set by the engine from batchsize_conf; use batchsize_conf instead")

    for key in _NO_STRATEGY_KEYS:
        if args.get(key) is False:
            args[key] = "no"

    problems.extend(check_dataclass_kwargs(args, dataclass_type, "training_args"))
    problems.extend(range_problems(args))
    problems.extend(loss_type_problems(args, dataclass_type))
    for key in [k for k in args if k not in valid]:
        args.pop(key)

    if problems:
        raise TrainingArgsError(problems)
    if args.get("output_dir") is None:
        args["output_dir"] = default_output_dir()
    return TrainingArgsResult(
        args=args, notices=notices, logging_dir=logging_dir, overwrite_output_dir=overwrite_output_dir
    )


def validate_training_args(args: dict[str, Any], dataclass_type: type) -> tuple[dict[str, Any], list[str]]:
    """Validate and translate `training_args` for `dataclass_type` (TrainingArguments or trl.DPOConfig).

    Returns the translated dict and the notices. A legacy `logging_dir` is removed from the dict; use
    `process_training_args` to get it. Raises `TrainingArgsError` (a ValueError) listing every problem.
    """
    result = process_training_args(args, dataclass_type)
    return result.args, result.notices
