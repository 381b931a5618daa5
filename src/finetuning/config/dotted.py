"""Dotted command-line overrides: `finetuning sft CFG --training.learning_rate 1e-4` (dialects.md rule 5).

An override changes the config *as written*, in its own dialect, before it is translated: the same flag a user
would type for the key they see in their file (`--training_args.learning_rate` in a native config,
`--learning_rate` in an axolotl one, `--input.args.lora_r` in a worker job). So a bad value is found by the same
translation and validation as a bad value in the file, and reported at that key, with the flag that set it.

Values are YAML scalars (`1e-4` a number, `true` a boolean, `[a, b]` a list, `null`), list items are addressed by
index (`--datasets.0.path x.jsonl`; the index one past the end adds an item). A path the config does not contain
must be one the dialect knows (its key table; for native configs the schema and the trainer's arguments), so a
typo is an error with a did-you-mean instead of a key silently added; a path the file already has is always
accepted (what it means is the translation's business, as for the file itself).
"""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from finetuning.errors import UserError, closest

# One example per dialect, for `--help` (cli.py) and the docs: what each dialect's users type.
EXAMPLES = {
    "native": "--training_args.learning_rate 1e-4 --data_conf.training_data.datasets.0.path train.jsonl",
    "sectioned": "--training.learning_rate 1e-4 --model.base_model path/to/model",
    "axolotl": "--learning_rate 1e-4 --datasets.0.path train.jsonl",
    "vectorlm": "--train_parameters.optimizer.lr 1e-4",
    "worker": "--input.args.lora_r 8",
}


@dataclass(frozen=True)
class Override:
    """One `--path VALUE` of the command line: the path as typed (dots), its parts, the value as typed and as read."""

    flag: str
    text: str
    value: Any

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.flag.split("."))

    def record(self) -> str:
        """`path=value` as typed, for the resolved config and the log; a secret's value masked."""
        from finetuning.config.secrets import is_secret_key

        return f"{self.flag}={'***' if is_secret_key(self.path[-1]) else self.text}"


@dataclass(frozen=True)
class Overrides:
    """The overrides of one command line, and the command's own options (a mistyped one is named in the error)."""

    items: tuple[Override, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def records(self) -> list[str]:
        return [item.record() for item in self.items]


NO_OVERRIDES = Overrides()

_FLAG = re.compile(r"--([^=\s]+)(?:=(.*))?", re.DOTALL)


def parse_arguments(arguments: Sequence[str], options: Iterable[str] = ()) -> Overrides:
    """`--a.b VALUE` and `--a.b=VALUE` pairs into overrides; anything else is a user error showing the form."""
    items, problems, rest = [], [], list(arguments)
    while rest:
        token = rest.pop(0)
        match = _FLAG.fullmatch(token)
        if match is None:
            problems.append(f"{token}: unexpected argument; a config override is --section.key VALUE")
            continue
        flag, text = match.group(1), match.group(2)
        if text is None:
            if not rest or rest[0].startswith("--"):
                problems.append(f"--{flag}: needs a value (--{flag} VALUE, or --{flag}=VALUE)")
                continue
            text = rest.pop(0)
        if any(part == "" for part in flag.split(".")):
            problems.append(f"--{flag}: an empty key in the dotted path")
            continue
        try:
            value = _yaml_value(text)
        except yaml.YAMLError as error:
            problems.append(f"--{flag}: the value {text!r} is not valid YAML ({getattr(error, 'problem', error)})")
            continue
        items.append(Override(flag, text, value))
    if problems:
        raise UserError(problems)
    return Overrides(tuple(items), tuple(options))


def apply_overrides(data: Mapping[str, Any], dialect: str, overrides: Overrides, method: str | None) -> dict:
    """A copy of the config as written with the overrides set; every unknown path or impossible one (a key under a
    value, an index past the end) at once, as a user error. `method`: a native config's (its schema depends on it)."""
    result = copy.deepcopy(dict(data))
    problems = []
    for item in overrides.items:
        problem = None if _exists(result, item.path) else _unknown(item, dialect, method, overrides.options)
        problems.append(problem or _set(result, item))
    if problems := [problem for problem in problems if problem]:
        raise UserError(problems)
    return result


def annotate(problems: list[str], overrides: Overrides) -> list[str]:
    """Problem lines at (or under) an overridden key say which flag set it: the file does not have that value."""
    if not overrides:
        return problems
    lines = []
    for problem in problems:
        path = re.sub(r"\[(\d+)\]", r".\1", problem.partition(": ")[0])
        flag = next((i.flag for i in overrides.items if path == i.flag or path.startswith(i.flag + ".")), None)
        lines.append(problem if flag is None else f"{problem} (set by --{flag})")
    return lines


# YAML 1.2 numbers PyYAML (YAML 1.1) reads as strings: `1e-4` has no dot, `1.0e-4` no sign in its exponent.
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _yaml_value(text: str) -> Any:
    """A command-line value as YAML reads it, except that `1e-4` is the number it is everywhere but in YAML 1.1."""
    if not text.strip():
        return text
    value = yaml.safe_load(text)
    return float(value) if isinstance(value, str) and _NUMBER.fullmatch(value) else value


# --- setting a value ---------------------------------------------------------------------------------------------


def _exists(data: Any, path: tuple[str, ...]) -> bool:
    current = data
    for part in path:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False
    return True


def _set(data: dict, item: Override) -> str | None:
    """Set the value at the path, creating the sections (and a first list item) it needs; a problem line or None."""
    current: Any = data
    path = item.path
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        fresh = [] if not last and path[depth + 1] == "0" else {}
        where = ".".join(path[: depth + 1])
        if isinstance(current, list):
            if not part.isdigit() or int(part) > len(current):
                count = f"{len(current)} item(s)"
                return f"--{item.flag}: {'.'.join(path[:depth])} is a list of {count}; use an index 0 to {len(current)}"
            index = int(part)
            if index == len(current):
                current.append(item.value if last else fresh)
            elif last:
                current[index] = item.value
            current = current[index]
        elif isinstance(current, dict):
            if last:
                current[part] = item.value
            elif not isinstance(current.get(part), (dict, list)):
                if current.get(part) is not None:
                    return f"--{item.flag}: {where} is a value ({current[part]!r}), not a section of keys"
                current[part] = fresh
            current = current[part]
        else:  # pragma: no cover - _exists/_unknown stop at values
            return f"--{item.flag}: {where} is a value, not a section of keys"
    return None


# --- known paths -------------------------------------------------------------------------------------------------


def _unknown(item: Override, dialect: str, method: str | None, options: Sequence[str]) -> str | None:
    """Why a path the config does not contain is not one of the dialect's keys (with a did-you-mean), or None."""
    found = _native_unknown(item.path, method) if dialect == "native" else _table_unknown(item.path, dialect)
    if found is None:
        return None
    depth, siblings = found
    if depth == 0:  # a top-level name may be a mistyped option of the command itself
        siblings = [*siblings, *(option.lstrip("-") for option in options)]
    match = closest(item.path[depth], siblings)
    if depth == 0:
        own = {option.lstrip("-") for option in options}
        hint = f"; did you mean --{match}?" if match else ""
        head = "neither an option of the command nor a top-level key" if own else "not a top-level key"
        return f"--{item.flag}: {head} of the {dialect} dialect{hint}"
    hint = f"; did you mean --{'.'.join([*item.path[:depth], match])}?" if match else ""
    return f"--{item.flag}: unknown key of {'.'.join(item.path[:depth])} in the {dialect} dialect{hint}"


def _table(dialect: str) -> dict[str, bool]:
    """The dialect's key paths (list items as `name[]`), each with whether its value is free-form below it (a key
    that is not a section); a worker job's `input.args` are the axolotl dialect's keys."""
    from finetuning.config.dialects import DIALECTS, worker

    keys = {key.path: not key.section for key in DIALECTS[dialect].keys}
    if dialect == "worker":
        keys.update({worker.ARGS + key.path: not key.section for key in DIALECTS[worker.ARGS_DIALECT].keys})
    return keys


def _table_unknown(path: tuple[str, ...], dialect: str) -> tuple[int, list[str]] | None:
    """(the depth of the first unknown part, the names known there), or None when the dialect knows the path."""
    table = _table(dialect)
    prefix = ""
    for depth, part in enumerate(path):
        name = prefix + ("[]" if part.isdigit() and prefix else ("." if prefix else "") + part)
        if not any(known == name or known.startswith((name + ".", name + "[]")) for known in table):
            if prefix in table and table[prefix] and not any(known.startswith(prefix + ".") for known in table):
                return None  # under a key whose value the translation checks (e.g. a LoRA config mapping)
            return depth, _names_under(table, prefix)
        prefix = name
    return None


def _names_under(table: Iterable[str], prefix: str) -> list[str]:
    start = prefix + "." if prefix else ""
    names = {known[len(start) :].split(".")[0].removesuffix("[]") for known in table if known.startswith(start)}
    return sorted(names)


def _native_unknown(path: tuple[str, ...], method: str | None) -> tuple[int, list[str]] | None:
    """The native schema walked along the path: a section's fields (any member of a union), a list's items; below a
    free mapping anything goes, except in `training_args`, whose keys are the method's trainer arguments."""
    from finetuning.config.loading import _is_model, _members, config_class_for
    from finetuning.config.trainer_fields import trainer_fields

    types: list[Any] = [config_class_for(method)]
    for depth, part in enumerate(path):
        if depth == 1 and path[0] == "training_args":
            names = list(trainer_fields(method or "sft").init_fields)
            return None if part in names else (depth, names)
        members = [member for tp in types for member in _members(tp)]
        models = [member for member in members if _is_model(member)]
        if models:
            names = list(dict.fromkeys(name for model in models for name in model.model_fields))
            if part not in names:
                return depth, names
            types = [model.model_fields[part].annotation for model in models if part in model.model_fields]
            continue
        items = [typing.get_args(m)[0] for m in members if typing.get_origin(m) in (list, tuple) and typing.get_args(m)]
        if part.isdigit() and items:
            types = items
            continue
        if any(m is Any or m is dict or typing.get_origin(m) is dict for m in members):
            return None
        return depth, []
    return None
