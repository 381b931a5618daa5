"""JSON Schema and Markdown reference of the config, both generated from the pydantic models.

The field descriptions are the single source of help text: `finetuning schema` prints the JSON Schema, and the
config reference in docs/ is rendered from the same schema so it cannot drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

from finetuning.config.experiment import ExperimentConfigBase, SFTExperimentConfig


def config_json_schema(config_class: type[ExperimentConfigBase] = SFTExperimentConfig) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the experiment config."""
    return config_class.model_json_schema()


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
