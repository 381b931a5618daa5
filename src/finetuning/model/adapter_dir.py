"""Recognise a PEFT adapter directory passed where a full model is expected, and say which directories to use.

`checkpoint-final` of a LoRA run is an adapter; passed as the model of `generate` or as `merge_adapter`'s base,
transformers loads it through its PEFT integration and fails deep inside (a size mismatch when the vocabulary grew)
with a long traceback. This turns that into one user-error line naming the base and the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import resolve_user_path

# Where `finetuning sft` saves the resized base when the chat template grew the vocabulary (the default of
# sft_args.save_name_if_new_basemodel); an adapter from such a run needs that base, not the original one.
NEW_BASEMODEL_NAME = "checkpoint-new-basemodel"
_MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def is_adapter_dir(path: Path) -> bool:
    """An adapter_config.json and no full-model weights: PEFT's own save layout."""
    return (path / "adapter_config.json").is_file() and not any((path / name).is_file() for name in _MODEL_WEIGHTS)


def adapter_base_model(adapter_dir: Path) -> str | None:
    """The base to load the adapter on: a resized base saved beside the adapter if there is one (the one it was
    trained on), else what adapter_config.json records."""
    beside = adapter_dir.parent / NEW_BASEMODEL_NAME
    if beside.is_dir() and beside != adapter_dir:
        return str(beside)
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = recorded.get("base_model_name_or_path") if isinstance(recorded, dict) else None
    return str(base) if base else None


def adapter_dir_as_model_problem(path: str, key: str, adapter_key: str = "the adapter") -> str | None:
    """`key: DIR is a PEFT adapter, not a model; use BASE as the model and DIR as <adapter_key>`, or None.

    `key` names where the model was given (`model_conf.model`, `basemodel`), `adapter_key` where the adapter goes."""
    directory = resolve_user_path(path)
    if not directory.is_dir() or not is_adapter_dir(directory):
        return None
    base = adapter_base_model(directory)
    where = f"use {base} as {key}" if base else f"use the model it was trained on as {key}"
    return f"{key}: {directory} is a PEFT adapter, not a full model; {where} and {directory} as {adapter_key}"
