"""Build the TRL config (SFTConfig, later DPOConfig) from the user's `training_args` plus what the engine computes."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from ..errors import UserError
from .batch_size import BatchPlan
from .lr import scaled_learning_rate

logger = logging.getLogger(__name__)


def _field_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def trainingarguments_defaults_for(config_class) -> dict:
    """Defaults where TRL's config class differs from TrainingArguments (e.g. learning_rate, logging_steps).

    `training_args` is documented as HF TrainingArguments, so an unset key means the TrainingArguments default,
    whichever TRL config class ends up carrying it.
    """
    from transformers import TrainingArguments

    base = {field.name: field for field in dataclasses.fields(TrainingArguments)}
    differing = {}
    for field in dataclasses.fields(config_class):
        if field.name in base:
            default = _field_default(base[field.name])
            if default is not dataclasses.MISSING and default != _field_default(field):
                differing[field.name] = default
    return differing


def build_training_config(config_class, training_args: dict, overrides, batchsize_conf, plan: BatchPlan, **engine):
    """training_args + batch plan + LR/epoch overrides + engine settings → an instance of `config_class`."""
    args = {**trainingarguments_defaults_for(config_class), **training_args}
    args.update(
        per_device_train_batch_size=plan.per_device_train_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        per_device_eval_batch_size=plan.per_device_eval_batch_size,
    )
    if overrides.num_train_epochs is not None:
        args["num_train_epochs"] = overrides.num_train_epochs
    args["learning_rate"] = scaled_learning_rate(
        args["learning_rate"],
        overrides.lr_multiplier,
        overrides.lr_batch_size_scaling,
        batchsize_conf.total_train_batch_size,
    )
    if args["learning_rate"] != training_args.get("learning_rate", args["learning_rate"]):
        logger.info("learning rate after overrides: %g", args["learning_rate"])
    if "disable_tqdm" not in training_args:
        # One progress bar on a terminal; in CI logs and pipes, one plain line per logging step instead.
        args["disable_tqdm"] = not sys.stderr.isatty()
    if "dataloader_pin_memory" not in training_args:
        from ..model.loading import has_accelerator

        args["dataloader_pin_memory"] = has_accelerator()  # pinning is pointless (and warns) without a GPU
    args.update(engine)
    if args.get("hub_token"):
        # The Trainer pickles its arguments into every checkpoint (training_args.bin): hand the token over through
        # the environment instead, where huggingface_hub reads it, so no file the run writes contains it.
        os.environ.setdefault("HF_TOKEN", args.pop("hub_token"))
    try:
        return config_class(**args)
    except ValueError as error:  # the arguments class's own consistency checks (__post_init__)
        raise UserError(f"training_args: {error}") from None
