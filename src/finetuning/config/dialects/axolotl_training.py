"""axolotl's training-loop keys: batch size, length of the run, warmup, logging, evaluation, checkpoints, stopping.

Batch: `micro_batch_size` is per device and `gradient_accumulation_steps` fixed, so the total grows with the
processes: total = micro × accumulation × processes (the context's process count), which the engine's batch plan
turns back into exactly that. Fractions of an epoch (`saves_per_epoch`, `evals_per_epoch`) become what axolotl makes
of them, a fraction of all steps: 1 / (per_epoch × num_epochs). Defaults that differ from the trainer's are axolotl's
(one epoch, a checkpoint every epoch, at most 4 kept, warmup 3% of the steps, logging every 0.5% of the steps).
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    MISSING,
    AxolotlBuilder,
    as_bool,
    as_float,
    as_int,
    as_mapping,
    as_str,
    at_least,
    fraction,
    one_of,
    option,
    renamed_as,
    set_from,
    unused,
)
from finetuning.config.dialects.builder import Key

DEFAULT_SAVE_TOTAL_LIMIT = 4  # axolotl keeps 4 checkpoints unless told otherwise
DEFAULT_WARMUP = 0.03  # axolotl: 3% of the steps (capped at 100 steps there)
DEFAULT_LOGGING = 0.005  # axolotl: 0.5% of the steps, at least 1 (and at most 10 steps there)
EVAL_KEYS = ("eval_steps", "evals_per_epoch", "eval_strategy")


def build_batch(b: AxolotlBuilder) -> None:
    micro, accumulation = b.value("micro_batch_size", 1), b.value("gradient_accumulation_steps", 1)
    processes = b.context.num_processes
    total = micro * accumulation * processes
    set_from(b, "batchsize_conf.max_per_device_train_batch_size", micro, "micro_batch_size")
    set_from(b, "batchsize_conf.total_train_batch_size", total, "micro_batch_size", "gradient_accumulation_steps")
    where = "micro_batch_size" if b.given("micro_batch_size") else "gradient_accumulation_steps"
    b.notice(
        where,
        f"{micro} per device × {accumulation} accumulation step(s) × {processes} process(es) = "
        f"batchsize_conf.total_train_batch_size {total}",
    )


def build_length(b: AxolotlBuilder) -> None:
    """num_epochs (default 1), warmup (default 3% of the steps) and logging (default 0.5% of the steps)."""
    set_from(b, "training_args.num_train_epochs", b.value("num_epochs", 1), "num_epochs")
    if b.given("warmup_steps") and b.given("warmup_ratio"):
        b.problem("warmup_ratio", "warmup_steps and warmup_ratio cannot both be set (as in axolotl); keep one")
    elif b.given("warmup_steps"):
        b.set("training_args.warmup_steps", b.value("warmup_steps"), source="warmup_steps")
    else:  # a warmup_steps below 1 is a fraction of all steps
        b.set("training_args.warmup_steps", b.value("warmup_ratio", DEFAULT_WARMUP), source="warmup_ratio")
    set_from(b, "training_args.logging_steps", b.value("logging_steps", DEFAULT_LOGGING), "logging_steps")


def has_validation(b: AxolotlBuilder) -> bool:
    return bool(b.value("val_set_size")) or b.given("test_datasets")


def _per_epoch(b: AxolotlBuilder, key: str) -> float:
    """axolotl's fraction of all steps for N events per epoch: 1 / (N × num_epochs)."""
    return 1.0 / (b.value(key) * b.value("num_epochs", 1))


def _fraction_text(b: AxolotlBuilder, key: str, native: str, every: float) -> str:
    return f"{b.value(key)} per epoch × {b.value('num_epochs', 1)} epoch(s): {native} {every:g} of all steps"


def build_saving(b: AxolotlBuilder) -> None:
    """save_steps / saves_per_epoch / save_strategy (default: every epoch) and save_total_limit (default 4)."""
    if b.given("save_steps") and b.given("saves_per_epoch"):
        b.problem("saves_per_epoch", "save_steps and saves_per_epoch cannot both be set (as in axolotl); keep one")
        return
    strategy, steps, source = b.value("save_strategy", "epoch"), None, "save_strategy"
    if b.given("save_steps"):
        strategy, steps, source = "steps", b.value("save_steps"), "save_steps"
    elif b.given("saves_per_epoch"):
        every = _per_epoch(b, "saves_per_epoch")
        if every < 1:
            strategy, steps, source = "steps", every, "saves_per_epoch"
            b.notice(source, _fraction_text(b, source, "save_steps", every))
        elif every > 1:
            b.notice("saves_per_epoch", "fewer than one save in the whole run: saving at the end only (as axolotl)")
    b.set("training_args.save_strategy", strategy, source=source if b.given(source) else None)
    if steps is not None:
        b.set("training_args.save_steps", steps, source=source)
    limit = b.value("save_total_limit", DEFAULT_SAVE_TOTAL_LIMIT)
    set_from(b, "training_args.save_total_limit", limit, "save_total_limit")


def build_evaluation(b: AxolotlBuilder) -> None:
    """eval_steps / evals_per_epoch / eval_strategy, each with an evaluation at the start as in axolotl; none of
    them: no evaluation (the trainer's default), even with a validation split."""
    if not has_validation(b):
        unused(b, EVAL_KEYS, "no validation data (val_set_size is 0 and there are no test_datasets)")
        return
    if b.given("eval_steps") and b.given("evals_per_epoch"):
        b.problem("evals_per_epoch", "eval_steps and evals_per_epoch cannot both be set (as in axolotl); keep one")
        return
    if b.given("eval_steps"):
        _evaluate(b, "eval_steps", "steps", b.value("eval_steps"))
    elif b.given("evals_per_epoch"):
        if b.value("eval_strategy", "steps") != "steps":
            b.problem("eval_strategy", "must be steps (or unset) with evals_per_epoch, as in axolotl")
            return
        every = _per_epoch(b, "evals_per_epoch")
        if every < 1:
            _evaluate(b, "evals_per_epoch", "steps", every)
            b.notice("evals_per_epoch", _fraction_text(b, "evals_per_epoch", "eval_steps", every))
        elif every == 1:  # axolotl sets nothing then and never evaluates; once per epoch is what was asked
            _evaluate(b, "evals_per_epoch", "epoch")
            b.notice("evals_per_epoch", "one evaluation per epoch of a one-epoch run: eval_strategy epoch")
        else:
            b.notice("evals_per_epoch", "fewer than one evaluation in the whole run: none (as axolotl)")
    elif b.given("eval_strategy"):
        _evaluate(b, "eval_strategy", b.value("eval_strategy"))
    else:
        where = "val_set_size" if b.given("val_set_size") else "test_datasets"
        b.notice(where, "no eval_steps, evals_per_epoch or eval_strategy: the validation data is never evaluated")


def _evaluate(b: AxolotlBuilder, source: str, strategy: str, steps: float | None = None) -> None:
    b.set("training_args.eval_strategy", strategy, source=source)
    if strategy == "no":
        return
    if steps is not None:
        b.set("training_args.eval_steps", steps, source=source)
    b.set("training_args.eval_on_start", True, source=source)


def build_stopping(b: AxolotlBuilder) -> None:
    if b.given("loss_watchdog_threshold"):
        b.set("stopping.loss_threshold", b.value("loss_watchdog_threshold"), source="loss_watchdog_threshold")
        if b.given("loss_watchdog_patience"):
            b.set("stopping.loss_patience", b.value("loss_watchdog_patience"), source="loss_watchdog_patience")
    else:
        unused(b, ["loss_watchdog_patience"], "loss_watchdog_threshold is not set")
    if b.given("early_stopping_patience"):
        b.set("stopping.early_stopping_patience", b.value("early_stopping_patience"), source="early_stopping_patience")


def build_checkpointing(b: AxolotlBuilder) -> None:
    """gradient_checkpointing (with axolotl's default kwargs {use_reentrant: false}) → activation checkpointing."""
    if not b.value("gradient_checkpointing"):
        unused(b, ["gradient_checkpointing_kwargs"], "gradient_checkpointing is not on")
        return
    b.set("training_args.activation_checkpointing", True, source="gradient_checkpointing")
    kwargs = b.value("gradient_checkpointing_kwargs", {"use_reentrant": False})
    set_from(b, "training_args.activation_checkpointing_kwargs", kwargs, "gradient_checkpointing_kwargs")


def _sampling(b: AxolotlBuilder, path: str, value: bool) -> None:
    if not value:
        return
    if path == "curriculum_sampling" and b.get("group_by_length") is True:
        b.problem(
            path,
            "curriculum_sampling (the data's order) and group_by_length (batches of similar length) "
            "choose different orders; keep one",
        )
    elif path == "curriculum_sampling" or b.get("curriculum_sampling") is not True:
        strategy = "group_by_length" if path == "group_by_length" else "sequential"
        b.set("training_args.train_sampling_strategy", strategy, source=path)


def _resume(b: AxolotlBuilder, path: str, value: Any) -> None:
    if path == "auto_resume_from_checkpoints" and (not value or b.given("resume_from_checkpoint")):
        return  # a named checkpoint wins, as in axolotl
    b.set("run_conf.resume_from_checkpoint", "auto" if value is True else value, source=path)


def _gradient_checkpointing(b: AxolotlBuilder, path: str, value: Any) -> Any:
    if value in ("offload", "offload_disk"):
        b.problem(path, f"{value}: activation offloading is not supported; use gradient_checkpointing: true")
        return MISSING
    return as_bool(b, path, value)


def _torch_compile(b: AxolotlBuilder, path: str, value: Any) -> None:
    if value == "auto":
        b.notice(path, "auto: not compiled (the model runs eagerly); set torch_compile: true to compile")
    elif value:
        b.set("training_args.torch_compile", True, source=path)


def _distributed(b: AxolotlBuilder, path: str, value: Any) -> None:
    processes = b.context.num_processes
    b.notice(path, f"applies to multi-process runs (this translation is for {processes} process(es))")


def _fsdp(b: AxolotlBuilder, path: str, value: Any) -> None:
    options = " ".join(value) if isinstance(value, list) else value
    b.set("training_args.fsdp", options, source=path)
    _distributed(b, path, value)


# axolotl's fsdp_config keys (with or without their `fsdp_` prefix) → the trainer's; the rest keep their name with
# the prefix dropped, as transformers reads them (train/fsdp.py checks them against the installed transformers).
_FSDP_CONFIG_NAMES = {"offload_params": "cpu_offload"}
# axolotl's sharding_strategy (a name, or torch's enum number) → the trainer's FSDP words
_SHARDING_WORDS = {
    "1": "full_shard",
    "2": "shard_grad_op",
    "3": "no_shard",
    "4": "hybrid_shard",
    "5": "hybrid_shard_zero2",
}


def _fsdp_config(b: AxolotlBuilder, path: str, value: dict) -> None:
    config = {}
    for key, setting in value.items():
        name = str(key).removeprefix("fsdp_")
        if name == "sharding_strategy":
            word = _SHARDING_WORDS.get(str(setting), str(setting).lower().lstrip("_"))
            b.set("training_args.fsdp", f"{word} auto_wrap", source=f"{path}.{key}")
        elif name == "final_state_dict_type":
            b.notice(f"{path}.{key}", "not needed: the final model is always saved consolidated (model.safetensors)")
        else:
            config[_FSDP_CONFIG_NAMES.get(name, name)] = setting
    b.set("training_args.fsdp_config", config, source=path)
    if not b.given("fsdp"):  # axolotl turns FSDP on for an fsdp_config alone
        if "fsdp" not in b.native["training_args"]:
            b.set("training_args.fsdp", "full_shard auto_wrap", source=path)
        _distributed(b, path, value)


TRAINING_KEYS: tuple[Key, ...] = (
    option(
        "micro_batch_size",
        "`batchsize_conf.max_per_device_train_batch_size`, and `total_train_batch_size` = micro_batch_size × "
        "gradient_accumulation_steps × processes (notice); default 1",
        at_least(1),
    ),
    option(
        "gradient_accumulation_steps",
        "part of `batchsize_conf.total_train_batch_size` (see micro_batch_size); default 1",
        at_least(1),
    ),
    renamed_as("eval_batch_size", "batchsize_conf.per_device_eval_batch_size", at_least(1)),
    Key(
        "batch_size",
        "refused",
        "axolotl derives accumulation from it only without gradient_accumulation_steps; set gradient_accumulation_"
        "steps (total = micro_batch_size × gradient_accumulation_steps × processes)",
    ),
    Key("auto_find_batch_size", "refused", "the batch plan is fixed by micro_batch_size; set it to what fits"),
    option("num_epochs", "`training_args.num_train_epochs` (default 1, axolotl's)", as_float),
    renamed_as("max_steps", "training_args.max_steps", at_least(1), "wins over num_epochs"),
    option("warmup_steps", "`training_args.warmup_steps`", at_least(0)),
    option(
        "warmup_ratio",
        "`training_args.warmup_steps` as a fraction of all steps (unset, with no warmup_steps: 0.03, axolotl's)",
        fraction,
    ),
    option("logging_steps", "`training_args.logging_steps` (unset: 0.005 of all steps)", at_least(1)),
    option(
        "eval_steps",
        "`training_args.eval_strategy: steps`, `eval_steps` (a float: a fraction of all steps), `eval_on_start`; "
        "with validation data only",
        as_float,
    ),
    option(
        "evals_per_epoch",
        "`training_args.eval_steps` = 1 / (evals_per_epoch × num_epochs) of all steps, `eval_on_start` (exactly one "
        "per epoch: `eval_strategy: epoch`)",
        at_least(1),
    ),
    option("eval_strategy", "`training_args.eval_strategy` (with `eval_on_start`)", one_of("no", "steps", "epoch")),
    option("save_strategy", "`training_args.save_strategy` (default epoch)", one_of("no", "steps", "epoch", "best")),
    option(
        "save_steps", "`training_args.save_strategy: steps`, `save_steps` (a float: a fraction of all steps)", as_float
    ),
    option(
        "saves_per_epoch",
        "`training_args.save_strategy: steps`, `save_steps` = 1 / (saves_per_epoch × num_epochs) of all steps",
        at_least(1),
    ),
    option("save_total_limit", "`training_args.save_total_limit` (default 4, axolotl's)", at_least(1)),
    renamed_as("save_only_model", "training_args.save_only_model", as_bool),
    renamed_as("load_best_model_at_end", "training_args.load_best_model_at_end", as_bool),
    renamed_as("metric_for_best_model", "training_args.metric_for_best_model", as_str),
    renamed_as("greater_is_better", "training_args.greater_is_better", as_bool),
    option("early_stopping_patience", "`stopping.early_stopping_patience`", at_least(1)),
    option(
        "loss_watchdog_threshold",
        "`stopping.loss_threshold`: a run whose logged loss stays above it stops, failed, with a checkpoint",
        as_float,
    ),
    option("loss_watchdog_patience", "`stopping.loss_patience` (default 3)", at_least(1)),
    option("group_by_length", "`training_args.train_sampling_strategy: group_by_length`", as_bool, then=_sampling),
    option(
        "curriculum_sampling",
        "`training_args.train_sampling_strategy: sequential` (the data order, not shuffled)",
        as_bool,
        then=_sampling,
    ),
    option(
        "gradient_checkpointing",
        "`training_args.activation_checkpointing` (offload / offload_disk refused)",
        _gradient_checkpointing,
    ),
    option(
        "gradient_checkpointing_kwargs",
        "`training_args.activation_checkpointing_kwargs` (default {use_reentrant: false}, axolotl's)",
        as_mapping,
    ),
    option(
        "torch_compile",
        "`training_args.torch_compile` (true); auto: not compiled (notice)",
        one_of("auto", True, False),
        then=_torch_compile,
    ),
    renamed_as("torch_compile_backend", "training_args.torch_compile_backend", as_str),
    renamed_as(
        "torch_compile_mode", "training_args.torch_compile_mode", one_of("default", "reduce-overhead", "max-autotune")
    ),
    renamed_as("output_dir", "training_args.output_dir", as_str, "the final model in its folder checkpoint-final"),
    renamed_as("seed", "training_args.seed", as_int, "also the validation split's seed"),
    option("resume_from_checkpoint", "`run_conf.resume_from_checkpoint` (a checkpoint folder)", as_str, then=_resume),
    option(
        "auto_resume_from_checkpoints",
        "`run_conf.resume_from_checkpoint: auto` (the latest checkpoint in output_dir)",
        as_bool,
        then=_resume,
    ),
    renamed_as("dataloader_num_workers", "training_args.dataloader_num_workers", at_least(0)),
    renamed_as("dataloader_pin_memory", "training_args.dataloader_pin_memory", as_bool),
    renamed_as("dataloader_prefetch_factor", "training_args.dataloader_prefetch_factor", at_least(1)),
    renamed_as("dataloader_drop_last", "training_args.dataloader_drop_last", as_bool),
    renamed_as("neftune_noise_alpha", "training_args.neftune_noise_alpha", as_float),
    option("fsdp", "`training_args.fsdp` (a list is joined: full_shard auto_wrap)", then=_fsdp),
    option(
        "fsdp_config",
        "`training_args.fsdp_config`, the `fsdp_` prefix dropped (offload_params → cpu_offload; sharding_strategy → "
        "`training_args.fsdp`; final_state_dict_type: notice, the final model is always consolidated); alone, also "
        "`fsdp: full_shard auto_wrap`",
        as_mapping,
        then=_fsdp_config,
    ),
    option(
        "deepspeed",
        "`training_args.deepspeed` (a JSON file or a mapping)",
        native="training_args.deepspeed",
        then=_distributed,
    ),
    renamed_as("ddp_timeout", "training_args.ddp_timeout", at_least(1)),
    renamed_as("ddp_bucket_cap_mb", "training_args.ddp_bucket_cap_mb", at_least(1)),
    renamed_as("ddp_broadcast_buffers", "training_args.ddp_broadcast_buffers", as_bool),
    renamed_as("ddp_find_unused_parameters", "training_args.ddp_find_unused_parameters", as_bool),
)
