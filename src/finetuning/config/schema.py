"""JSON Schema and Markdown reference of the config, both generated from the pydantic models.

The field descriptions are the single source of help text: `finetuning schema` prints the JSON Schema, and the
config reference in docs/ is rendered from the same schema so it cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
import typing
from typing import Any

from finetuning.config.experiment import (
    DPO_DEFAULT_MAX_LENGTH,
    DPO_DEFAULT_MAX_PROMPT_LENGTH,
    ExperimentConfigBase,
    PreferenceExperimentConfigBase,
    SFTExperimentConfig,
)
from finetuning.config.training_args import TRAINING_ARGS_FORBIDDEN

# Keys the validator accepts although the installed trainer arguments class may not have them (it translates or
# consumes them); listed in the schema as deprecated, so editors do not flag a working Silogen config.
LEGACY_TRAINING_ARGS = {
    "warmup_ratio": "Legacy: translated to warmup_steps (a value below 1 is a fraction of the total steps).",
    "group_by_length": "Legacy: true is translated to train_sampling_strategy: group_by_length.",
    "evaluation_strategy": "Legacy: renamed to eval_strategy.",
    "overwrite_output_dir": "Legacy: true lets a fresh start replace an earlier run's outputs in output_dir.",
    "logging_dir": "Legacy: the TensorBoard log directory (default $LOGS_PATH or ./logs).",
    "save_safetensors": "Legacy: only true; checkpoints are always safetensors.",
}
PREFERENCE_ENGINE_ARGS = {
    "max_prompt_length": (
        DPO_DEFAULT_MAX_PROMPT_LENGTH,
        "Prompts longer than this many tokens keep their last max_prompt_length tokens (null: no limit).",
    ),
    "reference_free": (False, "Reference-free DPO: reference log-probs are taken as 0."),
    "rpo_alpha": (None, "Legacy RPO weight: translated to an extra 'sft' loss_type with this loss weight."),
}
# Defaults the engine sets differently from the trainer arguments class.
ENGINE_DEFAULTS = {"output_dir": "./checkpoints"}
PREFERENCE_DEFAULTS = {"max_length": DPO_DEFAULT_MAX_LENGTH}


def config_json_schema(config_class: type[ExperimentConfigBase] = SFTExperimentConfig) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the experiment config; `training_args` lists the installed trainer arguments
    class' fields (read from the dataclass, so it follows the installed transformers / TRL)."""
    schema = config_class.model_json_schema()
    schema["properties"]["training_args"].update(training_args_schema(config_class))
    return schema


def training_args_schema(config_class: type[ExperimentConfigBase]) -> dict[str, Any]:
    """`properties` of `training_args` (name, type, default, help of each dataclass field), unknown keys refused as
    by the validator; the batch-size keys (set from batchsize_conf) are left out, so an editor flags them too."""
    dataclass_type = config_class._training_args_class()
    try:
        hints = typing.get_type_hints(dataclass_type)
    except Exception:  # an unresolvable forward reference: those fields get no type
        hints = {}
    preference = issubclass(config_class, PreferenceExperimentConfigBase)
    defaults = {**ENGINE_DEFAULTS, **(PREFERENCE_DEFAULTS if preference else {})}
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(dataclass_type):
        if field.init and not field.name.startswith("_") and field.name not in TRAINING_ARGS_FORBIDDEN:
            properties[field.name] = _field_schema(field, hints.get(field.name, Any), defaults)
    extra = {key: {"description": text, "deprecated": True} for key, text in LEGACY_TRAINING_ARGS.items()}
    if preference:
        extra.update(
            {key: {"default": default, "description": text} for key, (default, text) in PREFERENCE_ENGINE_ARGS.items()}
        )
        extra["rpo_alpha"]["deprecated"] = True
    for key, schema in extra.items():
        properties.setdefault(key, schema)
    return {"properties": properties, "additionalProperties": False}


def _field_schema(field: dataclasses.Field, annotation: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    out = _annotation_schema(annotation)
    default = defaults.get(field.name, _default(field))
    if default is not dataclasses.MISSING:
        out["default"] = default
    if field.metadata.get("help"):
        out["description"] = " ".join(str(field.metadata["help"]).split())
    return out


def _default(field: dataclasses.Field) -> Any:
    """The field's default as JSON (enum members as their values); MISSING when there is none or it is not JSON."""
    value = field.default
    if value is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    value = value.value if isinstance(value, enum.Enum) else value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return dataclasses.MISSING
    return value


_SIMPLE_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", type(None): "null"}


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a dataclass field annotation, as the validator reads it: `Enum | str` takes only the enum's
    values, `list[X]` also a single X; anything else (classes) is left open."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SIMPLE_TYPES:
        return {"type": _SIMPLE_TYPES[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [str(member.value) for member in annotation]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is dict:
        return {"type": "object"}
    if origin is list and args:
        item = _annotation_schema(args[0])
        return {"anyOf": [item, {"type": "array", "items": item}]} if item else {"type": "array"}
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        members = [a for a in args if not (a is str and any(_is_enum(b) for b in args))]
        schemas = [_annotation_schema(a) for a in members]
        if any(not schema for schema in schemas):  # one open member opens the whole union
            return {}
        flat = [member for schema in schemas for member in schema.get("anyOf", [schema])]
        unique = [schema for i, schema in enumerate(flat) if schema not in flat[:i]]
        return unique[0] if len(unique) == 1 else {"anyOf": unique}
    return {}


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type_text(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = _ref_name(prop["$ref"])
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " or ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in prop:
            return " or ".join(_type_text(p) for p in prop[key])
    kind = prop.get("type")
    if kind == "array" and "items" in prop:
        return f"array of {_type_text(prop['items'])}"
    if isinstance(kind, list):
        return " or ".join(f"`{k}`" for k in kind)
    return f"`{kind}`" if kind else "any"


def _default_text(prop: dict[str, Any], required: bool) -> str:
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    return "" if required else "`null`" if "anyOf" in prop else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [
        "| Property | Type | Required | Default | Description |",
        "| -------- | ---- | -------- | ------- | ----------- |",
    ]
    for name, prop in schema.get("properties", {}).items():
        is_required = name in required
        lines.append(
            f"| {name} | {_cell(_type_text(prop))} | {'yes' if is_required else ''} | "
            f"{_cell(_default_text(prop, is_required))} | {_cell(prop.get('description', ''))} |"
        )
    if schema.get("additionalProperties") is not False and schema.get("type") == "object":
        lines.append("")
        lines.append("Additional keys are allowed and passed on unchanged.")
    return lines


def render_config_reference(config_class: type[ExperimentConfigBase] = SFTExperimentConfig) -> str:
    """Markdown reference: the top-level keys, then one table per config model, alphabetically."""
    schema = config_json_schema(config_class)
    method = config_class.model_fields["method"].default
    out = [
        f"# Fine-tuning config reference: `method: {method}`",
        "",
        (config_class.__doc__ or "").strip().replace("\n    ", " "),
        "",
        f"Generated from the config models (`finetuning schema --method {method} --markdown`); do not edit by hand.",
        "Unknown keys are errors, except in `run_conf.model_args` (passed to `from_pretrained`).",
        "",
        "**Top-level properties:**",
        "",
        *_table(schema),
        "",
        "---",
        "",
        *_training_args_reference(config_class, schema["properties"]["training_args"]["properties"]),
        "",
        "---",
        "",
        "# Definitions",
    ]
    for name, definition in sorted(schema.get("$defs", {}).items()):
        out += ["", f"## {name}", ""]
        if definition.get("description"):
            out += [definition["description"].strip(), ""]
        if "properties" in definition:
            out += _table(definition)
        elif "enum" in definition:
            out.append("**Possible values:** " + " or ".join(f"`{v}`" for v in definition["enum"]))
    return "\n".join(out) + "\n"


def _training_args_reference(config_class: type[ExperimentConfigBase], properties: dict[str, Any]) -> list[str]:
    """The `training_args` section: the method's own options in full (DPOConfig / KTOConfig beyond
    TrainingArguments), the keys the engine consumes, then the TrainingArguments options in a compact table."""
    from transformers import TrainingArguments  # lazy: imports torch; only for the reference

    dataclass_type = config_class._training_args_class()
    library = "trl" if dataclass_type.__module__.startswith("trl") else "transformers"
    inherited = {field.name for field in dataclasses.fields(TrainingArguments)}
    fields = {field.name for field in dataclasses.fields(dataclass_type)}
    own = {key: prop for key, prop in properties.items() if key in fields - inherited}
    engine = {key: prop for key, prop in properties.items() if key not in fields}
    base = {key: prop for key, prop in properties.items() if key in inherited}
    out = [
        "# training_args",
        "",
        f"Checked against the installed `{dataclass_type.__name__}` ({library} {_version(library)}): unknown keys are "
        "errors. The batch size keys (`per_device_train_batch_size`, `per_device_eval_batch_size`, "
        "`gradient_accumulation_steps`) come from `batchsize_conf`.",
    ]
    if own:
        out += [
            "",
            f"## {dataclass_type.__name__} options beyond TrainingArguments",
            "",
            *_key_table(own, compact=False),
        ]
    out += ["", "## Keys the engine translates or consumes", "", *_key_table(engine, compact=False)]
    out += ["", f"## TrainingArguments options (transformers {_version('transformers')})", ""]
    return out + _key_table(base, compact=True)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _key_table(properties: dict[str, Any], compact: bool) -> list[str]:
    """Key | Type | Default | Description; compact: the first sentence of the help text only."""
    lines = ["| Key | Type | Default | Description |", "| --- | ---- | ------- | ----------- |"]
    for name, prop in properties.items():
        text = prop.get("description", "")
        if compact:
            text = text.split(". ", 1)[0].rstrip(".") + "."
        kind = _type_text(prop) if _has_type(prop) else "any"
        lines.append(f"| {name} | {_cell(kind)} | {_cell(_default_text(prop, False))} | {_cell(text)} |")
    return lines


def _has_type(prop: dict[str, Any]) -> bool:
    return any(key in prop for key in ("type", "enum", "const", "anyOf", "$ref"))
