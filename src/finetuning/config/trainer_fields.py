"""The fields of the installed trainer arguments classes, as a table that loads without importing them.

`training_args` is checked against the installed `TrainingArguments` / `DPOConfig` / `KTOConfig`, and `finetuning
schema` lists their fields; but importing them imports torch (seconds), which `validate` and `schema` must not wait
for. So each class is read once into a `FieldTable` (name, type, default, help of every field, which are init
fields, the loss types it documents), stored on disk by `checks_cache` keyed by the installed library versions, and
loaded from there afterwards. Types are kept as small JSON specs (`"int"`, `{"union": [...]}`, `{"enum": [...]}`,
...) from which the validator rebuilds the annotation pydantic checks.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import json
import re
import typing
from dataclasses import dataclass
from typing import Any

from finetuning.checks_cache import cached_outcome

FORMAT = 1  # bump when the table's layout changes: old entries are then simply not found
TRAINER_CLASSES = {"sft": "transformers:TrainingArguments", "dpo": "trl:DPOConfig", "kto": "trl:KTOConfig"}
_SIMPLE = {bool: "bool", int: "int", float: "float", str: "str", dict: "dict", list: "list", type(None): "none"}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any  # a JSON type spec (see `type_spec`)
    init: bool = True
    has_default: bool = False
    default: Any = None  # JSON (enum members as their values); meaningful when has_default
    help: str = ""


@dataclass(frozen=True, eq=False)  # compared by identity: validators built from a table are cached per table
class FieldTable:
    class_name: str
    module: str
    fields: tuple[FieldInfo, ...]
    loss_types: tuple[str, ...] = ()

    @functools.cached_property
    def init_fields(self) -> dict[str, FieldInfo]:
        """The keyword arguments of the class, by name (private `_x` fields left out, as the class' users do)."""
        return {f.name: f for f in self.fields if f.init and not f.name.startswith("_")}

    def has_field(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fields": [dataclasses.asdict(f) for f in self.fields]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FieldTable:
        fields = tuple(FieldInfo(**item) for item in data["fields"])
        return cls(data["class_name"], data["module"], fields, tuple(data.get("loss_types", ())))

    @classmethod
    def from_dataclass(cls, dataclass_type: type) -> FieldTable:
        return _table_of(dataclass_type)


def type_spec(annotation: Any) -> Any:
    """A JSON description of an annotation; classes other than enums keep only their name (`{"class": name}`), except
    dataclasses, which pydantic would fill from a mapping: those are left open (`"any"`), and the class itself checks
    the value when it is built."""
    if annotation is Any or isinstance(annotation, str) or dataclasses.is_dataclass(annotation):
        return "any"
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [str(member.value) for member in annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal and _json_safe(list(args)):
        return {"literal": list(args)}
    if origin is list:
        return {"list": type_spec(args[0])} if len(args) == 1 else "list"
    if origin is dict:
        return {"dict": [type_spec(args[0]), type_spec(args[1])]} if len(args) == 2 else "dict"
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return {"union": [type_spec(arg) for arg in args]}
    return {"class": getattr(annotation, "__name__", str(annotation))}


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _default(field: dataclasses.Field) -> tuple[bool, Any]:
    """(has a JSON default, the default): enum members as their values; a factory is called."""
    value = field.default
    if value is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    if value is dataclasses.MISSING:
        return False, None
    value = value.value if isinstance(value, enum.Enum) else value
    return (True, value) if _json_safe(value) else (False, None)


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


@functools.lru_cache(maxsize=16)
def _table_of(dataclass_type: type) -> FieldTable:
    try:
        hints = typing.get_type_hints(dataclass_type)
    except Exception:  # unresolvable forward references: those fields are typed by their raw annotation
        hints = {}
    fields = []
    for field in dataclasses.fields(dataclass_type):
        has_default, default = _default(field)
        help_text = " ".join(str(field.metadata.get("help") or "").split())
        annotation = hints.get(field.name, field.type)
        fields.append(FieldInfo(field.name, type_spec(annotation), field.init, has_default, default, help_text))
    return FieldTable(
        dataclass_type.__name__, dataclass_type.__module__, tuple(fields), documented_loss_types(dataclass_type)
    )


def _import_class(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def trainer_fields(method: str) -> FieldTable:
    """The table of the method's trainer arguments class, from the on-disk cache (built on first use: imports it)."""
    path = TRAINER_CLASSES[method]
    build = lambda: _table_of(_import_class(path)).to_json()  # noqa: E731
    data = cached_outcome("trainer-fields", [path, FORMAT], build, engine_code=False)
    return FieldTable.from_json(data)
