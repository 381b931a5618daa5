"""Checking a dict of keyword arguments against a dataclass' fields, without constructing it.

Used for `training_args` (the trainer arguments classes, read from a `FieldTable` so torch is not imported) and
`peft_conf.peft_kwargs` (peft's config classes). `__post_init__` is deliberately not run: in `TrainingArguments` it
touches devices and distributed state.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from finetuning.config._base import is_number
from finetuning.config.messages import clean_message, merge_alternatives, shown_input
from finetuning.config.trainer_fields import FieldTable
from finetuning.errors import did_you_mean

_SIMPLE = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict, "list": list, "none": type(None)}


@functools.cache
def _placeholder(name: str) -> type:
    """A stand-in for a class the table only names: no YAML value is an instance of it, as of the real class."""
    return type(name, (), {})


def annotation_of(spec: Any) -> Any:
    """The annotation a type spec describes (`trainer_fields.type_spec`); enums become Literals of their values."""
    if isinstance(spec, str):
        return _SIMPLE.get(spec, Any)
    if "union" in spec:
        return functools.reduce(lambda a, b: a | b, [annotation_of(member) for member in spec["union"]])
    if "list" in spec:
        return list[annotation_of(spec["list"])]
    if "dict" in spec:
        return dict[annotation_of(spec["dict"][0]), annotation_of(spec["dict"][1])]
    if "enum" in spec or "literal" in spec:
        return Literal[tuple(spec.get("enum", spec.get("literal")))]
    return _placeholder(spec["class"])


def _lenient(spec: Any) -> Any:
    """`list[X]` also accepts a single `X`: the dataclasses wrap a single value in `__post_init__`
    (e.g. DPOConfig `loss_type: sigmoid`), and Silogen configs rely on that."""
    if isinstance(spec, dict) and "list" in spec:
        return {"union": [spec, spec["list"]]}
    if isinstance(spec, dict) and "union" in spec:
        return {"union": [_lenient(member) for member in spec["union"]]}
    return spec


def _as_table(fields: FieldTable | type) -> FieldTable:
    return fields if isinstance(fields, FieldTable) else FieldTable.from_dataclass(fields)


@functools.lru_cache(maxsize=16)
def _type_checker(table: FieldTable) -> type[BaseModel]:
    """A pydantic model with the fields' annotations, all optional, used only to type-check values."""
    definitions: dict[str, Any] = {}
    for name, info in table.init_fields.items():
        try:
            definitions[name] = (annotation_of(_lenient(info.type)), None)
        except TypeError:  # a member that does not support `|`
            definitions[name] = (Any, None)
    config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")
    try:
        return create_model(f"{table.class_name}Check", __config__=config, **definitions)
    except Exception:
        # One annotation pydantic cannot handle should not disable all checks: drop just the bad ones.
        good: dict[str, Any] = {}
        for name, definition in definitions.items():
            try:
                create_model("Probe", __config__=config, **{name: definition})
                good[name] = definition
            except Exception:
                good[name] = (Any, None)
        return create_model(f"{table.class_name}Check", __config__=config, **good)


def _members(spec: Any) -> list[Any]:
    return spec["union"] if isinstance(spec, dict) and "union" in spec else [spec]


@functools.lru_cache(maxsize=16)
def enum_fields(table: FieldTable) -> dict[str, tuple[str, ...]]:
    """Fields typed `SomeEnum | str`: `__post_init__` converts the string, so only the enum's values work."""
    out: dict[str, tuple[str, ...]] = {}
    for name, info in table.init_fields.items():
        members = _members(info.type)
        enums = [m for m in members if isinstance(m, dict) and "enum" in m] if len(members) > 1 else []
        if len(enums) == 1:
            out[name] = tuple(enums[0]["enum"])
    return out


@functools.lru_cache(maxsize=16)
def number_fields(table: FieldTable) -> frozenset[str]:
    """Fields typed int / float (possibly Optional): pydantic would read true / false there as 1 / 0."""
    names = set()
    for name, info in table.init_fields.items():
        members = [m for m in _members(info.type) if m != "none"]
        if members and all(member in ("int", "float") for member in members):
            names.add(name)
    return frozenset(names)


def _format_type_error(err: dict[str, Any], prefix: str) -> str:
    # loc[0] is the key; deeper parts are union member names or list indices, not useful to the user.
    return f"{prefix}.{err['loc'][0]}: {clean_message(err['msg'])}"


def unknown_key_problem(key: str, valid: typing.Iterable[str], hints: dict[str, str] | None = None) -> str:
    """`unknown key`, with where the setting lives instead (`hints`) or a did-you-mean."""
    hint = (hints or {}).get(key)
    return f"unknown key; {hint}" if hint is not None else f"unknown key{did_you_mean(key, valid)}"


def check_dataclass_kwargs(
    args: dict[str, Any], fields: FieldTable | type, prefix: str, key_hints: dict[str, str] | None = None
) -> list[str]:
    """Problems with `args` as keyword arguments of a dataclass (a `FieldTable` of it, or the class itself): unknown
    keys with a did-you-mean (or `key_hints[key]`), enum values, value types, each as `prefix.key: message`. Coerces
    numbers that YAML left as strings, in place."""
    table = _as_table(fields)
    valid = table.init_fields
    problems = [
        f"{prefix}.{key}: {unknown_key_problem(str(key), valid, key_hints)}" for key in args if key not in valid
    ]
    known = {key: value for key, value in args.items() if key in valid}
    numbers = number_fields(table)
    for key in [key for key, value in known.items() if isinstance(value, bool) and key in numbers]:
        problems.append(f"{prefix}.{key}: must be a number, got {str(known.pop(key)).lower()}")
    for key, choices in enum_fields(table).items():
        value = known.get(key)
        if isinstance(value, str) and value not in choices:
            hint = did_you_mean(value, choices) or f"; expected one of {', '.join(choices)}"
            problems.append(f"{prefix}.{key}: unknown value '{value}'{hint}")
    try:
        checked = _type_checker(table).model_validate(known)
    except ValidationError as exc:
        errors = exc.errors()
        given = {f"{prefix}.{err['loc'][0]}": shown for err in errors if (shown := shown_input(err)) is not None}
        problems.extend(merge_alternatives([_format_type_error(err, prefix) for err in errors], given))
    else:
        for key, value in known.items():
            coerced = getattr(checked, key)
            # YAML reads `1e-4` as a string; hand the library the number pydantic accepted.
            if isinstance(value, str) and is_number(coerced):
                args[key] = coerced
    return problems
