"""The VectorLM dialect (seed 001): its `config.yaml` translated into the native config.

VectorLM trains from data it preprocessed into `save_to_disk` directories (`dataset_preprocess` → `save_path`), so
the training data is `format: tokenized` and the preprocessing is `data_conf.preprocess`. Its trainer counts steps
in micro-batches (every batch of `train_bs`) and has no total batch size; the translation converts both into the
native terms and says so. Semantics: the spec's peer-semantics.md §2; the table of every key is KEYS (rendered in
docs/dialects/vectorlm.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetuning.config._base import is_number
from finetuning.config.dialects.builder import Builder, Context, Key, Translation, renamed, section_key, walk
from finetuning.config.dialects.vectorlm_devices import DEVICE_KEYS
from finetuning.config.dialects.vectorlm_wandb import WANDB_KEYS
from finetuning.config.training_args import PLATEAU_SPELLINGS

TELL_TALE = "train_parameters together with dataset or dataset_preprocess"
REQUIRED = ("model", "train_parameters.epochs", "dataset.train_bs", "dataset.train_ds")
TP = "train_parameters"
GAS = "train_parameters.gradient_accumulation_steps"
NATIVE_ORDER = ("method", "run_conf", "peft_conf", "data_conf", "sft_args", "training_args", "batchsize_conf", "wandb")
EPOCHS = "train_parameters.epochs"
# torch.optim.AdamW's defaults where they differ from TrainingArguments': VectorLM builds AdamW(**optimizer).
ADAMW_DEFAULTS = {"learning_rate": 1e-3, "weight_decay": 1e-2}


def matches(data: Mapping[str, Any]) -> bool:
    return "train_parameters" in data and ("dataset" in data or "dataset_preprocess" in data)


def translate(data: Mapping[str, Any], context: Context) -> Translation:
    """A VectorLM config as a native one (with the problems found, at the keys the user wrote)."""
    builder = Builder(data, context)
    _fixed_settings(builder)
    for path in REQUIRED:
        if not builder.has(path):
            builder.problem(path, "required key is missing")
    if not builder.has("train_parameters.max_seq_len"):
        builder.notice(
            "train_parameters.max_seq_len",
            "not given; sequences are cut at 2048 tokens (the native default; VectorLM used the model's "
            "max_position_embeddings)",
        )
    walk(builder, KEYS)
    return builder.translation(NATIVE_ORDER)


def _fixed_settings(b: Builder) -> None:
    """What every VectorLM config means without a key saying so (see the docs' "Fixed settings")."""
    b.set("method", "sft")
    b.set("data_conf.validation_data", {"type": "NONE"})
    # Tokenized data uses no chat template; keep-original is the one choice that adds no tokens to the tokenizer.
    b.set("data_conf.chat_template_name", "keep-original")
    b.set("data_conf.missing_pad_token_strategy", "eos-repurpose")  # VectorLM pads with eos when there is no pad
    # VectorLM resumes from output_dir's latest checkpoint: a problem with resuming is one with that directory
    b.set("run_conf.resume_from_checkpoint", "auto", source="train_parameters.output_dir")
    b.set("run_conf.final_checkpoint_name", "final-model")  # where VectorLM writes the final model
    b.set("sft_args.length_handling", "truncate")  # its collator cuts every row to max_seq_len
    b.set("peft_conf", {"peft_type": "NO_PEFT"})
    b.set("training_args.optim", "adamw_torch")
    b.set("training_args.save_strategy", "no")
    for key, value in ADAMW_DEFAULTS.items():
        b.set(f"training_args.{key}", value)


def _positive_int(value: Any) -> bool:
    return is_number(value) and float(value).is_integer() and value >= 1


# --- train_parameters ----------------------------------------------------------------------------------------------


def _epochs(b: Builder, path: str, value: Any) -> None:
    if b.integer(path, value, minimum=1) is not None:  # VectorLM loops over range(epochs)
        b.set("training_args.num_train_epochs", int(value), source=path)


def _lora(b: Builder, path: str, value: Any) -> None:
    options = b.mapping(path, value)
    if options is None:
        return
    if "peft_type" in options:
        b.problem(f"{path}.peft_type", "lora_peft_config holds LoraConfig options; its adapter type is always LORA")
        return
    kwargs = {key: item for key, item in options.items() if key != "task_type"}
    peft = {"peft_type": "LORA", "task_type": options.get("task_type", "CAUSAL_LM"), "peft_kwargs": kwargs}
    b.set("peft_conf", peft, source=path)
    b.maps("peft_conf.peft_kwargs", path)
    b.maps("peft_conf.task_type", f"{path}.task_type")


def _accumulation(b: Builder, path: str, value: Any) -> None:
    b.integer(path, value, minimum=1)  # used by dataset.train_bs and logging_steps


def _betas(b: Builder, path: str, value: Any) -> None:
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(item) for item in value)):
        b.problem(path, f"must be a list of two numbers [beta1, beta2], got {value!r}")
        return
    b.set("training_args.adam_beta1", value[0], source=f"{path}[0]")
    b.set("training_args.adam_beta2", value[1], source=f"{path}[1]")


def _fused(b: Builder, path: str, value: Any) -> None:
    if b.boolean(path, value) is not None:
        b.set("training_args.optim", "adamw_torch_fused" if value else "adamw_torch", source=path)


def _warmup_ratio(b: Builder, path: str, value: Any) -> None:
    """VectorLM warms up for ceil(ratio × optimizer steps of ONE epoch). A transformers scheduler reads a
    warmup_steps below 1 as a fraction of ALL steps (so: ratio / epochs); plateau-with-warmup reads it per epoch."""
    ratio = b.number(path, value)
    epochs = b.valid(EPOCHS, _positive_int)
    if ratio is None:
        return
    if not 0 <= ratio < 1:
        b.problem(path, f"must be at least 0 and below 1, got {ratio}")
    elif b.get(f"{TP}.lr_scheduler_type") in PLATEAU_SPELLINGS:
        b.set("training_args.warmup_steps", ratio, source=path)
    elif epochs is not None:
        b.set("training_args.warmup_steps", ratio / epochs, source=path)
        if epochs > 1:
            b.notice(path, f"{ratio} of one epoch's steps = warmup_steps {ratio / epochs:g} of all {epochs} epochs'")


def _checkpointing(b: Builder, path: str, value: Any) -> None:
    if b.boolean(path, value) is None:
        return
    b.set("training_args.save_strategy", "steps" if value else "no", source=path)
    if value and not b.has("train_parameters.save_frequency"):
        b.problem("train_parameters.save_frequency", "required when checkpointing_enabled is true")


def _save_frequency(b: Builder, path: str, value: Any) -> None:
    fraction = b.number(path, value)
    if fraction is None:
        return
    if not 0 < fraction <= 1:
        b.problem(path, f"must be a fraction of an epoch above 0 and at most 1, got {fraction}")
    elif b.get("train_parameters.checkpointing_enabled") is not True:
        b.notice(path, "not used: checkpointing_enabled is not true")
    elif fraction == 1:
        b.set("training_args.save_strategy", "epoch", source=path)
    elif (epochs := b.valid(EPOCHS, _positive_int)) is not None:  # a float below 1: a fraction of all steps
        b.set("training_args.save_steps", fraction / epochs, source=path)


def _logging_steps(b: Builder, path: str, value: Any) -> None:
    """VectorLM evaluates when its micro-batch counter is a multiple of logging_steps (0 included); the trainer
    counts optimizer steps, each `gradient_accumulation_steps` micro-batches."""
    every = b.integer(path, value, minimum=1)
    if every is None:
        return
    accumulation = int(b.valid(GAS, _positive_int) or 1)
    steps = max(1, round(every / accumulation))
    b.set("training_args.logging_steps", steps, source=path)
    evaluates = b.has("dataset.eval_ds")
    if evaluates:
        for key, setting in (("eval_strategy", "steps"), ("eval_steps", steps), ("eval_on_start", True)):
            b.set(f"training_args.{key}", setting, source=path)
    if accumulation > 1:
        what = "evaluation (and at step 0) and training loss" if evaluates else "training loss"
        b.notice(
            path,
            f"{every} micro-batches = {steps} optimizer step(s) of {accumulation} accumulated batches: {what} every "
            f"{steps} step(s)",
        )


# --- dataset and dataset_preprocess --------------------------------------------------------------------------------


def _ignore_index(native: str | None):
    def handle(b: Builder, path: str, value: Any) -> None:
        if value != -100 or isinstance(value, bool):
            b.problem(path, f"only -100 is supported (the engine's loss ignores label -100), got {value!r}")
        elif native is not None:
            b.set(native, value, source=path)

    return handle


def _train_bs(b: Builder, path: str, value: Any) -> None:
    per_device = b.integer(path, value, minimum=1)
    accumulation = b.valid(GAS, _positive_int)
    if per_device is None or (accumulation is None and b.has(GAS)):
        return
    accumulation, processes = int(accumulation or 1), b.context.num_processes
    total = per_device * accumulation * processes
    b.set("batchsize_conf.max_per_device_train_batch_size", per_device, source=path)
    b.set("batchsize_conf.total_train_batch_size", total, source=path)
    b.notice(
        path,
        f"{per_device} per device × {accumulation} accumulation step(s) × {processes} process(es) = "
        f"batchsize_conf.total_train_batch_size {total}",
    )


def _dataset(where: str):
    def handle(b: Builder, path: str, value: Any) -> None:
        native = f"data_conf.{where}"
        b.set(native, {"type": "CONCATENATION", "datasets": [{"path": value, "format": "tokenized"}]}, source=path)
        b.maps(f"{native}.datasets[0].path", path)

    return handle


def _separator(b: Builder, path: str, value: Any) -> None:
    if path.endswith("seperator") and b.has("dataset_preprocess.separator"):
        b.problem(path, "both seperator and separator are given; keep one")
        return
    b.set("data_conf.preprocess.separator", value, source=path)


def _preprocess_section(b: Builder, path: str, value: Any) -> None:
    b.maps("data_conf.preprocess", path)  # its checks across keys (truncate with packing_type, ...)


PREPROCESS_KEYS = (
    "load_path",
    "split",
    "from_disk",
    "data_field",
    "pre_pend",
    "add_bos_eos_tokens",
    "packing_type",
    "overlap",
    "truncate",
    "dataset_format",
    "save_path",
)

KEYS: tuple[Key, ...] = (
    renamed("model", "run_conf.model"),
    *WANDB_KEYS,
    section_key(TP),
    renamed(f"{TP}.output_dir", "training_args.output_dir", "the final model in its folder final-model"),
    renamed(
        f"{TP}.max_seq_len",
        "sft_args.max_seq_length",
        "longer rows are cut, as VectorLM's collator does; also the preprocessing's chunk length",
    ),
    Key(f"{TP}.epochs", "translated", "`training_args.num_train_epochs` (a whole number)", _epochs),
    renamed(f"{TP}.seed", "training_args.seed", "also the data order: data_seed is left to follow it"),
    *DEVICE_KEYS,
    Key(
        f"{TP}.lora_peft_config",
        "translated",
        "`peft_conf` with `peft_type: LORA`, its `task_type` (default CAUSAL_LM) and the other keys as `peft_kwargs`",
        _lora,
    ),
    renamed(f"{TP}.max_grad_norm", "training_args.max_grad_norm", "clipped once per optimizer step"),
    Key(
        GAS,
        "translated",
        "`batchsize_conf.total_train_batch_size` = train_bs × this × processes; also the step unit of logging_steps",
        _accumulation,
    ),
    section_key(f"{TP}.optimizer"),
    renamed(f"{TP}.optimizer.lr", "training_args.learning_rate", "default 1e-3, AdamW's"),
    renamed(f"{TP}.optimizer.weight_decay", "training_args.weight_decay", "default 0.01, AdamW's"),
    Key(f"{TP}.optimizer.betas", "translated", "`training_args.adam_beta1`, `adam_beta2`", _betas),
    renamed(f"{TP}.optimizer.eps", "training_args.adam_epsilon"),
    Key(f"{TP}.optimizer.fused", "translated", "`training_args.optim: adamw_torch_fused` (false: adamw_torch)", _fused),
    Key(f"{TP}.optimizer.amsgrad", "refused", "AMSGrad has no trainer option (optim adamw_torch is AdamW); drop it"),
    Key(f"{TP}.optimizer.maximize", "refused", "gradient ascent is not a fine-tuning option; drop it"),
    Key(f"{TP}.optimizer.foreach", "accepted", "the trainer's AdamW picks its own implementation (same result)"),
    Key(f"{TP}.optimizer.capturable", "accepted", "the trainer's AdamW picks its own implementation (same result)"),
    Key(f"{TP}.optimizer.differentiable", "accepted", "no gradient flows through the optimizer step in training"),
    renamed(
        f"{TP}.lr_scheduler_type",
        "training_args.lr_scheduler_type",
        "any transformers scheduler, and plateau-with-warmup / plataeu-with-warmup",
    ),
    Key(
        f"{TP}.warmup_ratio",
        "translated",
        "`training_args.warmup_steps` = warmup_ratio / epochs (VectorLM warms up for a ratio of one epoch's steps; "
        "with plateau-with-warmup, which reads it per epoch: warmup_ratio)",
        _warmup_ratio,
    ),
    Key(
        f"{TP}.checkpointing_enabled",
        "translated",
        "`training_args.save_strategy: steps` (false: no); runs resume from output_dir's latest checkpoint",
        _checkpointing,
    ),
    Key(
        f"{TP}.logging_steps",
        "translated",
        "`training_args.logging_steps`; with eval_ds also `eval_strategy: steps`, `eval_steps`, `eval_on_start: true`; "
        "micro-batches converted to optimizer steps (÷ gradient_accumulation_steps)",
        _logging_steps,
    ),
    Key(
        f"{TP}.save_frequency",
        "translated",
        "`training_args.save_steps` = save_frequency / epochs (a fraction of all steps; 1: `save_strategy: epoch`); "
        "must be in (0, 1]",
        _save_frequency,
    ),
    section_key("dataset"),
    Key(
        "dataset.ignore_index",
        "translated",
        "-100 only (the engine's loss ignores -100); other values refused",
        _ignore_index(None),
    ),
    renamed("dataset.eval_bs", "batchsize_conf.per_device_eval_batch_size"),
    Key(
        "dataset.train_bs",
        "translated",
        "`batchsize_conf.max_per_device_train_batch_size`, and `total_train_batch_size` = train_bs × "
        "gradient_accumulation_steps × processes (notice)",
        _train_bs,
    ),
    Key(
        "dataset.train_ds",
        "translated",
        "`data_conf.training_data`: CONCATENATION of one `{path, format: tokenized}`",
        _dataset("training_data"),
    ),
    Key(
        "dataset.eval_ds",
        "translated",
        "`data_conf.validation_data`: CONCATENATION of one `{path, format: tokenized}` (absent: NONE)",
        _dataset("validation_data"),
    ),
    section_key("dataset_preprocess", _preprocess_section),
    Key(
        "dataset_preprocess.ignore_index",
        "translated",
        "`data_conf.preprocess.ignore_index`: -100 only (other values refused)",
        _ignore_index("data_conf.preprocess.ignore_index"),
    ),
    *(renamed(f"dataset_preprocess.{key}", f"data_conf.preprocess.{key}") for key in PREPROCESS_KEYS),
    Key(
        "dataset_preprocess.seperator",
        "translated",
        "`data_conf.preprocess.separator` (VectorLM's spelling)",
        _separator,
    ),
    Key("dataset_preprocess.separator", "translated", "`data_conf.preprocess.separator`", _separator),
)
