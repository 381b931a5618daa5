"""The sectioned YAML dialect (seed 003): `model`, `fine_tuning`, `training`, `dataset`, `distributed`, `output` and
`evaluation` sections → the native config.

A config is sectioned when it has `model` and at least one of `fine_tuning`, `training`, `dataset`, and neither
VectorLM's `train_parameters` nor axolotl's top-level `base_model`. Every key of the seed's tables, example and
templates has its fate in KEYS (rendered in docs/dialects/sectioned.md). The seed documents intent only (its code
lacks the validator, oasst/custom formats, prompt masking and a working lm-eval call), so each key means what its
table says, done the native way; where the seed's default is unsafe (`trust_remote_code: true`) ours is not.
Values are read as axolotl's are (`1e-4` is a number), with the same typed reads (axolotl_common).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetuning.config.dialects.axolotl_common import AxolotlBuilder
from finetuning.config.dialects.builder import Context, Key, Translation, walk
from finetuning.config.dialects.sectioned_eval import EVAL_KEYS, build_evaluation
from finetuning.config.dialects.sectioned_model import MODEL_KEYS, build_method, build_model, precision
from finetuning.config.dialects.sectioned_training import (
    TRAINING_KEYS,
    build_data,
    build_distributed,
    build_output,
    build_training,
    same_value,
)

TELL_TALE = "model with fine_tuning / training / dataset (no train_parameters, no top-level base_model)"
SECTIONS = ("fine_tuning", "training", "dataset")
NATIVE_ORDER = (
    "method",
    "run_conf",
    "quant_conf",
    "peft_conf",
    "spectrum",
    "data_conf",
    "sft_args",
    "training_args",
    "batchsize_conf",
    "eval_conf",
)
KEYS: tuple[Key, ...] = (*MODEL_KEYS, *TRAINING_KEYS, *EVAL_KEYS)


def matches(data: Mapping[str, Any]) -> bool:
    return (
        "model" in data
        and any(section in data for section in SECTIONS)
        and "train_parameters" not in data
        and "base_model" not in data
    )


def translate(data: Mapping[str, Any], context: Context) -> Translation:
    """A sectioned config as a native one (with the problems found, at the keys the user wrote)."""
    builder = AxolotlBuilder(_without_nulls(data), context)
    builder.set("method", "sft")
    if builder.get("model.base_model") is None:
        builder.problem("model.base_model", "required key is missing (a Hugging Face model id or a local path)")
    walk(builder, KEYS)
    build_model(builder)
    dtype = precision(builder)
    build_method(builder, dtype)
    build_training(builder)
    build_data(builder)
    build_distributed(builder)
    build_output(builder)
    build_evaluation(builder, same_value)
    builder.native.setdefault("training_args", {})  # native requires the section; its defaults are the trainer's
    return builder.translation(NATIVE_ORDER)


def _without_nulls(data: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its null values (`hub_model_id: null` in the seed's example): a null sets nothing."""
    return {
        name: _without_nulls(value) if isinstance(value, Mapping) else value
        for name, value in data.items()
        if value is not None
    }
