"""JSON Schema and Markdown reference of the config, both generated from the pydantic models.

The field descriptions are the single source of help text: `finetuning schema` prints the JSON Schema, and the
config reference in docs/ is rendered from the same schema so it cannot drift from the code.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

from finetuning.config.experiment import (
    DPO_DEFAULT_MAX_LENGTH,
    DPO_DEFAULT_MAX_PROMPT_LENGTH,
    ExperimentConfigBase,
    PreferenceExperimentConfigBase,
    SFTExperimentConfig,
)
from finetuning.config.legacy_keys import LEGACY_KEYS
from finetuning.config.trainer_fields import FieldInfo, trainer_fields
from finetuning.config.training_args import ENGINE_SCHEDULERS, ONE_CYCLE_SETTINGS, TRAINING_ARGS_FORBIDDEN

# Keys the validator accepts although the installed trainer arguments class may not have them (it translates or
# consumes them); listed in the schema as deprecated, so editors do not flag a working Silogen config.
LEGACY_TRAINING_ARGS = {key: legacy.description for key, legacy in LEGACY_KEYS.items()}
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
    class' fields (read from its field table, so it follows the installed transformers / TRL)."""
    schema = config_class.model_json_schema()
    schema["properties"]["training_args"].update(training_args_schema(config_class))
    return schema


def training_args_schema(config_class: type[ExperimentConfigBase]) -> dict[str, Any]:
    """`properties` of `training_args` (name, type, default, help of each dataclass field), unknown keys refused as
    by the validator; the batch-size keys (set from batchsize_conf) are left out, so an editor flags them too."""
    preference = issubclass(config_class, PreferenceExperimentConfigBase)
    defaults = {**ENGINE_DEFAULTS, **(PREFERENCE_DEFAULTS if preference else {})}
    properties: dict[str, Any] = {}
    for name, field in config_class._trainer_fields().init_fields.items():
        if name not in TRAINING_ARGS_FORBIDDEN:
            properties[name] = _field_schema(field, defaults)
    extra = {key: {"description": text, "deprecated": True} for key, text in LEGACY_TRAINING_ARGS.items()}
    if preference:
        extra.update(
            {key: {"default": default, "description": text} for key, (default, text) in PREFERENCE_ENGINE_ARGS.items()}
        )
        extra["rpo_alpha"]["deprecated"] = True
    for key, schema in extra.items():
        properties.setdefault(key, schema)
    _add_engine_schedulers(properties)
    return {"properties": properties, "additionalProperties": False}


def _add_engine_schedulers(properties: dict[str, Any]) -> None:
    """The schedulers the engine builds itself (train/schedulers.py) are lr_scheduler_type values too."""
    scheduler, kwargs = properties.get("lr_scheduler_type"), properties.get("lr_scheduler_kwargs")
    if scheduler is None or "enum" not in scheduler:
        return
    scheduler["enum"] = [*scheduler["enum"], *ENGINE_SCHEDULERS]
    scheduler["description"] = (
        f"{scheduler.get('description', '')} The engine's own: plateau-with-warmup (VectorLM's: linear warmup, then "
        "ReduceLROnPlateau on eval_loss) and one_cycle (torch's OneCycleLR over the run: peak learning_rate, "
        "pct_start the warmup's share)."
    ).strip()
    if kwargs is not None:
        kwargs["description"] = (
            f"{kwargs.get('description', '')} one_cycle: {', '.join(ONE_CYCLE_SETTINGS)}. cosine: num_cycles, and "
            "the engine's min_lr_ratio (decay to that share of learning_rate), constant_lr_ratio (reach it at that "
            "share of the steps, then stay), quadratic_warmup (axolotl's cosine_min_lr_ratio, "
            "cosine_constant_lr_ratio, lr_quadratic_warmup). plateau-with-warmup: ReduceLROnPlateau's factor, "
            "patience, threshold, threshold_mode, cooldown, min_lr, eps."
        ).strip()


def _field_schema(field: FieldInfo, defaults: dict[str, Any]) -> dict[str, Any]:
    out = _annotation_schema(field.type)
    if field.name in defaults:
        out["default"] = defaults[field.name]
    elif field.has_default:
        out["default"] = field.default
    if field.help:
        out["description"] = field.help
    return out


_SIMPLE_TYPES = {
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "str": "string",
    "dict": "object",
    "none": "null",
}


def _annotation_schema(spec: Any) -> dict[str, Any]:
    """JSON Schema of a field's type spec (`trainer_fields.type_spec`), as the validator reads it: `Enum | str` takes
    only the enum's values, `list[X]` also a single X; anything else (classes) is left open."""
    if isinstance(spec, str):
        return {"type": _SIMPLE_TYPES[spec]} if spec in _SIMPLE_TYPES else {}
    if "enum" in spec or "literal" in spec:
        return {"enum": list(spec.get("enum", spec.get("literal")))}
    if "dict" in spec:
        return {"type": "object"}
    if "list" in spec:
        item = _annotation_schema(spec["list"])
        return {"anyOf": [item, {"type": "array", "items": item}]} if item else {"type": "array"}
    if "union" in spec:
        members = [m for m in spec["union"] if not (m == "str" and any(_is_enum(b) for b in spec["union"]))]
        schemas = [_annotation_schema(m) for m in members]
        if any(not schema for schema in schemas):  # one open member opens the whole union
            return {}
        flat = [member for schema in schemas for member in schema.get("anyOf", [schema])]
        unique = [schema for i, schema in enumerate(flat) if schema not in flat[:i]]
        return unique[0] if len(unique) == 1 else {"anyOf": unique}
    return {}


def _is_enum(spec: Any) -> bool:
    return isinstance(spec, dict) and "enum" in spec


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
    table = config_class._trainer_fields()
    library = "trl" if table.module.startswith("trl") else "transformers"
    inherited = {field.name for field in trainer_fields("sft").fields}  # TrainingArguments'
    fields = {field.name for field in table.fields}
    own = {key: prop for key, prop in properties.items() if key in fields - inherited}
    engine = {key: prop for key, prop in properties.items() if key not in fields}
    base = {key: prop for key, prop in properties.items() if key in inherited}
    out = [
        "# training_args",
        "",
        f"Checked against the installed `{table.class_name}` ({library} {_version(library)}): unknown keys are "
        "errors. The batch size keys (`per_device_train_batch_size`, `per_device_eval_batch_size`, "
        "`gradient_accumulation_steps`) come from `batchsize_conf`.",
    ]
    if own:
        out += [
            "",
            f"## {table.class_name} options beyond TrainingArguments",
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
