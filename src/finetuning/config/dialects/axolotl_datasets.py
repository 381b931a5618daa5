"""axolotl's `datasets[]` (and `test_datasets[]`) entries → native dataset entries with their row format.

The row formats are the native ones (spec: dialects.md rule 6), so an axolotl `type` picks a `format` and, for chat
rows, the source's field and role names (`columns`, `roles`). SFT types: alpaca, oasst, sharegpt, chat_template (its
field_messages / message_property_mappings / roles) and completion (raw text). With `rl`, axolotl's preference types:
its `chatml.*` / `llama3.*` strategies hard-code a chat template and a prompt field, so each becomes a pair or KTO
format with that field and implies that template; `chat_template.default` reads a message list with chosen and
rejected, rendered by the configured chat template.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finetuning.config.dialects.axolotl_common import (
    MISSING,
    AxolotlBuilder,
    Read,
    as_mapping,
    as_str,
    as_strs,
    one_of,
)
from finetuning.config.dialects.builder import Key
from finetuning.errors import did_you_mean

CHATML, LLAMA3 = "chat-ml", "simplified-llama31"
CHAT_FIELDS = ("field_messages", "message_property_mappings", "message_field_role", "message_field_content", "roles")
# axolotl's chat_template default role names (prompt_strategies/chat_template.py), ours first
CHAT_TEMPLATE_ROLES = {"user": ["user", "human"], "assistant": ["assistant", "gpt"], "system": ["system"]}
SFT_FORMATS = {
    "alpaca": "alpaca",
    "oasst": "oasst",
    "sharegpt": "sharegpt",
    "chat_template": "messages",
    "completion": "text",
}
TYPE_FIELDS = {  # the entry keys each type reads (others are noticed as not used)
    "chat_template": (*CHAT_FIELDS, "roles_to_train", "train_on_eos"),
    "sharegpt": ("roles",),
    "completion": ("field",),
    "chat_template.default": (*CHAT_FIELDS, "field_chosen", "field_rejected"),
}
EXTENSIONS = {"json": (".json", ".jsonl"), "csv": (".csv",), "parquet": (".parquet",)}


@dataclass(frozen=True)
class PreferenceType:
    """An axolotl preference strategy: the native format, the source field of the prompt, the template it renders."""

    format: str
    prompt: str | None = None
    template: str | None = None


def _fixed_template(prefix: str, template: str, fields: dict[str, str | None], row_format: str) -> dict:
    return {f"{prefix}.{name}": PreferenceType(row_format, prompt, template) for name, prompt in fields.items()}


PAIR_FIELDS = {"intel": "question", "icr": "input", "prompt_pairs": None}
KTO_FIELDS = {"ultra": None, "prompt_pairs": None, "intel": "question", "argilla": "instruction"}
PREFERENCE_TYPES = {
    "dpo": {
        **_fixed_template("chatml", CHATML, PAIR_FIELDS, "prompt_chosen_rejected"),
        **_fixed_template("llama3", LLAMA3, PAIR_FIELDS, "prompt_chosen_rejected"),
        "chat_template.default": PreferenceType("messages_chosen_rejected"),
    },
    "kto": {
        **_fixed_template("chatml", CHATML, KTO_FIELDS, "prompt_completion_label"),
        **_fixed_template("llama3", LLAMA3, KTO_FIELDS, "prompt_completion_label"),
    },
}
PREFERENCE_TYPES["ipo"] = PREFERENCE_TYPES["dpo"]


@dataclass(frozen=True)
class EntryKey:
    read: Read | None  # None: refused (its doc says why)
    doc: str
    accepted: bool = False  # only its default value is read: accepted (another value is a problem)

    @property
    def fate(self) -> str:
        return "refused" if self.read is None else "accepted" if self.accepted else "translated"


ENTRY_KEYS: dict[str, EntryKey] = {
    "path": EntryKey(as_str, "`path`: a local file (.jsonl, .json, .parquet, .csv), a saved dataset or a Hub id"),
    "type": EntryKey(
        as_str,
        "`format`: alpaca, oasst, sharegpt, chat_template → messages, completion → text; with rl: chatml.* / "
        "llama3.* (intel, icr, prompt_pairs; KTO: ultra, prompt_pairs, intel, argilla) and chat_template.default",
    ),
    "ds_type": EntryKey(
        one_of("json", "csv", "parquet", "arrow"),
        "json / csv / parquet / arrow: files are read by their extension, which must agree",
    ),
    "data_files": EntryKey(as_strs, "`data_files` (which files of a Hub dataset)"),
    "split": EntryKey(as_str, "`split`"),
    "train_on_split": EntryKey(as_str, "`split` (the seed worker's spelling)"),
    "name": EntryKey(as_str, "`name` (a Hub dataset's configuration)"),
    "revision": EntryKey(as_str, "`revision` (a Hub dataset's git revision)"),
    "field_messages": EntryKey(as_str, "`columns.messages` (chat_template, chat_template.default)"),
    "message_property_mappings": EntryKey(as_mapping, "`columns.role` / `columns.content` from its role / content"),
    "message_field_role": EntryKey(as_str, "`columns.role` (axolotl's older spelling)"),
    "message_field_content": EntryKey(as_str, "`columns.content` (axolotl's older spelling)"),
    "roles": EntryKey(
        as_mapping,
        "`roles` (ours → the data's names; chat_template's default: user ← user/human, assistant ← assistant/gpt)",
    ),
    "roles_to_train": EntryKey(
        as_strs, "[assistant] only (the assistant turns; train_on_inputs: true trains all)", accepted=True
    ),
    "train_on_eos": EntryKey(one_of("turn"), "turn only (each trained turn's end marker is trained)", accepted=True),
    "field_chosen": EntryKey(as_str, "`columns.chosen` (chat_template.default)"),
    "field_rejected": EntryKey(as_str, "`columns.rejected` (chat_template.default)"),
    "field": EntryKey(one_of("text"), "completion: text only (the field raw text rows are read from)", accepted=True),
    "chat_template": EntryKey(None, "one chat template per run: set the top-level chat_template"),
    "chat_template_jinja": EntryKey(None, "one chat template per run: set the top-level chat_template_jinja"),
    "conversation": EntryKey(None, "fastchat conversation templates are retired in axolotl; use type: chat_template"),
    "field_human": EntryKey(None, "sharegpt's legacy fields: use type: chat_template with message_property_mappings"),
    "field_model": EntryKey(None, "sharegpt's legacy fields: use type: chat_template with message_property_mappings"),
    "shards": EntryKey(None, "sharding a dataset is not supported; select rows with split (e.g. train[:10%])"),
    "trust_remote_code": EntryKey(None, "dataset loading scripts are not supported (datasets 4 dropped them)"),
    "drop_system_message": EntryKey(None, "not supported; remove the system turns from the data"),
}
ENTRY_DOC_KEYS: tuple[Key, ...] = tuple(
    Key(f"datasets[].{name}", key.fate, key.doc) for name, key in ENTRY_KEYS.items()
)


def translate_entries(b: AxolotlBuilder, where: str, target: str) -> tuple[list[dict], dict[str, str]]:
    """The native entries of `datasets` / `test_datasets`, and the chat template each preference type implies (by
    the source key of its type)."""
    entries, templates = [], {}
    for index, entry in enumerate(b.value(where, [])):
        native = _entry(b, f"{where}[{index}]", entry, f"data_conf.{target}.datasets[{len(entries)}]", templates)
        if native is not None:
            entries.append(native)
    return entries, templates


def _entry(b: AxolotlBuilder, path: str, entry: Any, native_path: str, templates: dict) -> dict | None:
    if not isinstance(entry, Mapping):
        b.problem(path, f"must be a mapping with path and type, got {entry!r}")
        return None
    values = _read_entry(b, path, entry)
    for required in ("path", "type"):
        if required not in values and entry.get(required) is None:
            b.problem(f"{path}.{required}", "required key is missing")
    if "path" not in values or "type" not in values:
        return None
    native = {"path": values["path"]}
    b.maps(native_path, path)
    b.maps(f"{native_path}.path", f"{path}.path")
    row_format = _format(b, path, values, native, templates)
    if row_format is None:
        return None
    native["format"] = row_format
    b.maps(f"{native_path}.format", f"{path}.type")
    _source(b, path, values, native, native_path)
    return native


def _read_entry(b: AxolotlBuilder, path: str, entry: Mapping) -> dict[str, Any]:
    values = {}
    for name, value in entry.items():
        key, where = ENTRY_KEYS.get(name), f"{path}.{name}"
        if key is None:
            b.problem(where, "unknown key" + did_you_mean(str(name), ENTRY_KEYS))
        elif value is None or (key.read is None and value is False):
            continue  # empty, or a refused option switched off: asks for nothing
        elif key.read is None:
            b.problem(where, key.doc)
        elif (checked := key.read(b, where, value)) is not MISSING:
            values[name] = checked
    return values


def _format(b: AxolotlBuilder, path: str, values: dict, native: dict, templates: dict) -> str | None:
    kind = values["type"]
    _unused_fields(b, path, values, kind)
    if b.rl is None:
        if kind not in SFT_FORMATS:
            _unknown_type(b, path, kind, SFT_FORMATS)
            return None
        if kind == "chat_template":
            _chat_fields(b, path, values, native, roles=CHAT_TEMPLATE_ROLES)
        elif kind == "sharegpt" and "roles" in values:
            native["roles"] = values["roles"]
        return SFT_FORMATS[kind]
    known = PREFERENCE_TYPES.get(b.rl, {})
    if kind not in known:
        _unknown_type(b, path, kind, known, f" for rl: {b.rl}")
        return None
    preference = known[kind]
    if preference.template is not None:
        templates[f"{path}.type"] = preference.template
    if preference.prompt is not None:
        native["columns"] = {"prompt": preference.prompt}
    if kind == "chat_template.default":
        _chat_fields(b, path, values, native, roles=None)
    return preference.format


def _unknown_type(b: AxolotlBuilder, path: str, kind: str, known: Mapping, context: str = "") -> None:
    hint = did_you_mean(kind, known) or f"; supported{context}: {', '.join(known)}"
    b.problem(f"{path}.type", f"{kind!r} is not a type this engine reads{context}{hint}")


def _unused_fields(b: AxolotlBuilder, path: str, values: dict, kind: str) -> None:
    reads = TYPE_FIELDS.get(kind, ())
    for name in values:
        if name in {field for fields in TYPE_FIELDS.values() for field in fields} - set(reads):
            b.notice(f"{path}.{name}", f"not used by type {kind}")


def _chat_fields(b: AxolotlBuilder, path: str, values: dict, native: dict, roles: dict | None) -> None:
    """field_messages, message_property_mappings (or its older keys), field_chosen/rejected → columns; roles."""
    columns = dict(native.get("columns", {}))
    mappings = dict(values.get("message_property_mappings", {}))
    for old, new in (("message_field_role", "role"), ("message_field_content", "content")):
        if old in values:
            mappings.setdefault(new, values[old])
    for name, field in mappings.items():
        if name in ("role", "content"):
            columns[name] = field
        else:
            b.problem(f"{path}.message_property_mappings.{name}", "only role and content are read from a message")
    for key, column in (("field_messages", "messages"), ("field_chosen", "chosen"), ("field_rejected", "rejected")):
        if key in values:
            columns[column] = values[key]
    if columns:
        native["columns"] = columns
    if "roles" in values or roles is not None:
        native["roles"] = values.get("roles", roles)
    if values.get("roles_to_train", ["assistant"]) != ["assistant"]:
        b.problem(f"{path}.roles_to_train", "only [assistant] is supported: the assistant turns are trained")


def _source(b: AxolotlBuilder, path: str, values: dict, native: dict, native_path: str) -> None:
    """Where the rows come from: split (or train_on_split), name, data_files, revision; ds_type must agree."""
    if "split" in values and "train_on_split" in values and values["split"] != values["train_on_split"]:
        b.problem(f"{path}.train_on_split", "split and train_on_split name different splits; keep one")
    for key, native_key in (
        ("split", "split"),
        ("train_on_split", "split"),
        ("name", "name"),
        ("data_files", "data_files"),
        ("revision", "revision"),
    ):
        if key in values and native_key not in native:
            native[native_key] = values[key]
            b.maps(f"{native_path}.{native_key}", f"{path}.{key}")
    if "columns" in native:
        b.maps(f"{native_path}.columns", path)
    if "roles" in native:
        b.maps(f"{native_path}.roles", f"{path}.roles" if "roles" in values else f"{path}.type")
    extension = os.path.splitext(values["path"])[1].lower()
    kind = values.get("ds_type")
    known = [name for name, suffixes in EXTENSIONS.items() if extension in suffixes]
    if kind is not None and known and kind not in known:
        b.problem(f"{path}.ds_type", f"{kind}, but {values['path']} is a {known[0]} file (read by its extension)")
