"""Build the TRL config (SFTConfig, DPOConfig, KTOConfig) from the user's `training_args` plus what the run computes
(batch plan, learning-rate overrides) and what the method sets."""

from __future__ import annotations

import dataclasses
import logging
import re
import sys

from ..errors import UserError
from .batch_size import BatchPlan
from .deepspeed import deepspeed_arguments
from .distributed import num_processes
from .fsdp import fsdp_arguments
from .lr import scaled_learning_rate
from .schedulers import with_engine_scheduler

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


def build_training_config(
    config_class, training_args: dict, overrides, plan: BatchPlan, *, announce: bool = True, **method_settings
):
    """training_args + batch plan + LR/epoch overrides + the method's own settings → an instance of `config_class`.
    `announce`: log what the overrides made of the learning rate (the pre-flight does; the recipe, building the
    same object again, does not repeat it). `training_args` holds no hub token: the run's lifecycle hands it over
    through the environment (train/lifecycle.py), as the Trainer pickles its arguments into every checkpoint."""
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
        plan.total_train_batch_size,
    )
    if announce and args["learning_rate"] != training_args.get("learning_rate", args["learning_rate"]):
        logger.info("learning rate after overrides: %g", args["learning_rate"])
    if "disable_tqdm" not in training_args:
        # One progress bar on a terminal; in CI logs and pipes, one plain line per logging step instead.
        args["disable_tqdm"] = not sys.stderr.isatty()
    if "dataloader_pin_memory" not in training_args:
        from ..model.loading import has_accelerator

        args["dataloader_pin_memory"] = has_accelerator()  # pinning is pointless (and warns) without a GPU
    if "use_cpu" not in training_args and distribute_on_cpu():
        args["use_cpu"] = True
    args.update(method_settings)
    args = fsdp_arguments(args)  # FSDP2 validated and made to shard on every platform (train/fsdp.py)
    args = deepspeed_arguments(args, plan)  # ZeRO config with the batch plan's fields (train/deepspeed.py)
    args = with_engine_scheduler(args)  # plateau-with-warmup, one_cycle, cosine extensions: train/schedulers.py
    try:
        return config_class(**args)
    except (ValueError, ImportError) as error:  # the class's own consistency checks (__post_init__), or a missing
        # package an option needs (deepspeed)
        raise UserError(config_key_wording(str(error), args)) from None


def distribute_on_cpu() -> bool:
    """Several processes and no accelerator: without `use_cpu` accelerate sets up no DDP (each process trains alone
    on its share of the data while the log claims a distributed run); with it, gloo DDP, exact. Decided before the
    first TrainingArguments is built, as that fixes accelerate's process state for the whole process."""
    from ..model.loading import has_accelerator

    return num_processes() > 1 and not has_accelerator()


_FLAG = re.compile(r"--(\w+)")


def config_key_wording(message: str, args: dict) -> str:
    """transformers words its argument errors for its command line (`--save_steps`): name the config keys instead,
    and say how to fix the commonest one."""
    message = _FLAG.sub(r"training_args.\1", message.strip())
    key, _, rest = message.partition(" ")
    if not (key.startswith("training_args.") and rest):
        return f"training_args: {message}"
    if "round multiple" in rest:
        rest += (
            f" Set training_args.save_steps (now {args.get('save_steps')}) to a multiple of training_args.eval_steps "
            f"(now {args.get('eval_steps') or args.get('logging_steps')}), or the other way round"
        )
    return f"{key}: {rest}"


def training_config_class(method: str):
    """The TRL arguments class a method's recipe builds (sft.py, dpo.py)."""
    from trl import DPOConfig, KTOConfig, SFTConfig

    return {"sft": SFTConfig, "dpo": DPOConfig, "kto": KTOConfig}[method]


def check_training_config(cfg, plan: BatchPlan, skip: tuple[str, ...] = ()) -> None:
    """Build the arguments object the recipe will build, and throw it away: every argument error transformers or TRL
    raises at construction becomes a pre-flight problem (`finetuning validate` finds it too). `skip` leaves out keys
    already reported as wrong. The hub token stays out: it is only handed over when the recipe runs."""
    training_args = {key: value for key, value in cfg.training_args.items() if key not in skip and key != "hub_token"}
    method_settings = {"max_length": cfg.sft_args.max_seq_length} if cfg.method == "sft" else {}
    build_training_config(training_config_class(cfg.method), training_args, cfg.overrides, plan, **method_settings)
