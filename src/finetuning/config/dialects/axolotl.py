"""The axolotl dialect (seed 002: the options of an axolotl YAML, and the `args` of a worker job) → the native config.

A config is axolotl's when it has `base_model`. Every key has its fate in KEYS (rendered in docs/dialects/axolotl.md):
translated, refused with the reason and what to use instead, or accepted with a notice. Most axolotl options mean
something only together, so the key handlers check and keep each value, and the group builders then write the native
config from them, in an order where each may read what the earlier ones wrote (the qlora compute dtype is the
training dtype). An empty value (`lora_model_dir:`) is as if the key were absent, as in axolotl; so is a refused
option switched off (`xformers_attention: false`). Semantics: axolotl's schema (utils/schemas), its trainer builders
(core/builders) and its data loading (utils/data), as docs/dialects/axolotl.md lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetuning.config.dialects.axolotl_adapter import ADAPTER_KEYS, build_adapter
from finetuning.config.dialects.axolotl_common import AxolotlBuilder
from finetuning.config.dialects.axolotl_data import DATA_KEYS, build_data
from finetuning.config.dialects.axolotl_datasets import ENTRY_DOC_KEYS
from finetuning.config.dialects.axolotl_model import MODEL_KEYS, build_attention, build_precision
from finetuning.config.dialects.axolotl_optim import OPTIM_KEYS, build_optimization
from finetuning.config.dialects.axolotl_rl import RL_KEYS, TRACKING_KEYS, build_rl, build_tracking
from finetuning.config.dialects.axolotl_training import (
    TRAINING_KEYS,
    build_batch,
    build_checkpointing,
    build_evaluation,
    build_length,
    build_saving,
    build_stopping,
)
from finetuning.config.dialects.builder import Context, Key, Translation, walk

TELL_TALE = "base_model"
REQUIRED = ("base_model", "datasets", "learning_rate")
NATIVE_ORDER = (
    "method",
    "run_conf",
    "quant_conf",
    "peft_conf",
    "data_conf",
    "sft_args",
    "training_args",
    "batchsize_conf",
    "stopping",
    "wandb",
    "tracking",
)
# In this order: rl decides the method and what the data keys mean; precision decides the qlora compute dtype.
BUILDERS = (
    build_rl,
    build_precision,
    build_attention,
    build_adapter,
    build_data,
    build_batch,
    build_length,
    build_optimization,
    build_saving,
    build_evaluation,
    build_stopping,
    build_checkpointing,
    build_tracking,
)

KEYS: tuple[Key, ...] = (
    *MODEL_KEYS,
    *ADAPTER_KEYS,
    *DATA_KEYS,
    *ENTRY_DOC_KEYS,
    *TRAINING_KEYS,
    *OPTIM_KEYS,
    *RL_KEYS,
    *TRACKING_KEYS,
)


def matches(data: Mapping[str, Any]) -> bool:
    return "base_model" in data


def translate(data: Mapping[str, Any], context: Context) -> Translation:
    """An axolotl config as a native one (with the problems found, at the keys the user wrote)."""
    builder = AxolotlBuilder(_without_empty_values(data), context)
    for path in REQUIRED:
        if builder.get(path) is None:
            builder.problem(path, "required key is missing")
    walk(builder, KEYS)
    for build in BUILDERS:
        build(builder)
    return builder.translation(NATIVE_ORDER)


def _without_empty_values(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config without the keys that ask for nothing: empty values of known keys, and refused options switched
    off. Unknown keys stay, so that an unknown key is reported even when empty."""
    kept = {}
    for name, value in data.items():
        key = TABLE.get(f"{prefix}{name}")
        if key is not None and (value is None or (key.fate == "refused" and value is False)):
            continue
        if key is not None and key.section and isinstance(value, Mapping):
            value = _without_empty_values(value, f"{prefix}{name}.")
        kept[name] = value
    return kept


TABLE = {key.path: key for key in KEYS}
