"""The sectioned dialect's `training`, `dataset`, `distributed` and `output` sections.

Two sections may say one thing twice (`gradient_accumulation_steps` in `training` and `distributed`, `eval_steps` in
`output` and `evaluation`): equal values are one setting, different ones a config error naming both keys. The data
keys follow the native pipeline (data/formats.py, data/templates.py), which is what `preprocessing` then means:
- `add_eos_token`: every reply is trained with the token that ends it (eos after an alpaca/oasst completion, the chat
  template's end of turn after an assistant message), so the model learns to stop; `false` cannot be honoured.
- `add_bos_token`: bos is where the tokenizer (prompt/completion rows) and the chat template (chat rows) put it at
  inference, so training sees what inference sees; the flag changes nothing (a notice).
- `use_chat_template`: chat rows (sharegpt, custom) are rendered with the tokenizer's own chat template
  (`chat_template_name: keep-original`); alpaca and oasst rows are prompt + completion text, never templated.
Prompts are masked: the loss is on the replies only (`sft_args.train_on_completions_only`), the seed's intent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from finetuning.config.dialects.axolotl_common import (
    AxolotlBuilder,
    as_bool,
    as_float,
    as_int,
    as_str,
    fraction,
    one_of,
    option,
    renamed_as,
    unused,
)
from finetuning.config.dialects.builder import Key, section_key
from finetuning.errors import UserError
from finetuning.train.deepspeed import read_deepspeed_config, zero_stage, zero_stage_config

FORMATS = {"alpaca": "alpaca", "sharegpt": "sharegpt", "oasst": "oasst", "custom": "messages"}
CHAT_FORMATS = ("sharegpt", "custom")
PRE = "dataset.preprocessing"
DS = "distributed"
DEFAULT_ZERO_STAGE = 2


def _positive(b: AxolotlBuilder, path: str, value: Any) -> Any:
    return as_int(b, path, value, minimum=1)


def accepted(path: str, doc: str, read) -> Key:
    """A key that translates into nothing: its value is checked and kept, and a build step gives its notice."""
    return replace(option(path, doc, read), fate="accepted")


TRAINING_KEYS: tuple[Key, ...] = (
    section_key("training"),
    renamed_as("training.epochs", "training_args.num_train_epochs", as_float),
    option(
        "training.micro_batch_size",
        "`batchsize_conf.max_per_device_train_batch_size`; × gradient_accumulation_steps × processes = "
        "`batchsize_conf.total_train_batch_size`",
        _positive,
    ),
    option("training.gradient_accumulation_steps", "part of `batchsize_conf.total_train_batch_size`", _positive),
    renamed_as("training.learning_rate", "training_args.learning_rate", as_float),
    renamed_as("training.lr_scheduler_type", "training_args.lr_scheduler_type", as_str),
    renamed_as("training.warmup_ratio", "training_args.warmup_steps", fraction, "a share of all steps"),
    renamed_as("training.max_grad_norm", "training_args.max_grad_norm", as_float),
    renamed_as("training.optimizer", "training_args.optim", as_str),
    renamed_as("training.weight_decay", "training_args.weight_decay", as_float),
    renamed_as("training.max_seq_length", "sft_args.max_seq_length", _positive),
    option(
        "training.gradient_checkpointing",
        "`training_args.activation_checkpointing` (with `use_reentrant: false`)",
        as_bool,
    ),
    option(
        "training.mixed_precision",
        "bf16 / fp16 → `training_args.bf16` / `fp16` and `run_conf.model_args.torch_dtype`; no: fp32 (without "
        "CUDA: fp32, with a notice)",
        one_of("no", "fp16", "bf16"),
    ),
    section_key("dataset"),
    option(
        "dataset.format",
        "the datasets' `format`: alpaca, sharegpt, oasst as named; custom → `messages` rows "
        '(`{"messages": [{"role", "content"}, ...]}`)',
        one_of(*FORMATS),
    ),
    option("dataset.train_path", "`data_conf.training_data.datasets[0].path` (required; JSONL)", as_str),
    option(
        "dataset.eval_path",
        "`data_conf.validation_data.datasets[0].path` (absent: `validation_data.type: NONE`)",
        as_str,
    ),
    section_key(PRE),
    option(
        f"{PRE}.add_eos_token", "true: what the pipeline does (every reply ends with eos); false is refused", as_bool
    ),
    accepted(
        f"{PRE}.add_bos_token",
        "a notice: bos is written where the tokenizer and the chat template put it at inference",
        as_bool,
    ),
    option(
        f"{PRE}.use_chat_template",
        "sharegpt / custom rows: `data_conf.chat_template_name: keep-original` (the tokenizer's template; false is "
        "refused); alpaca / oasst rows are never templated (a notice when true)",
        as_bool,
    ),
    section_key(DS),
    option(
        f"{DS}.use_deepspeed",
        "DeepSpeed ZeRO: `training_args.deepspeed` (the file of deepspeed_config, or the engine's config for "
        "zero_stage); batch fields from batchsize_conf. Needs `pip install 'finetuning[deepspeed]'`",
        as_bool,
    ),
    option(
        f"{DS}.deepspeed_config",
        "`training_args.deepspeed`: the DeepSpeed JSON file (relative to the working directory); with zero_stage "
        "too, its stage is set to zero_stage",
        as_str,
    ),
    option(
        f"{DS}.zero_stage",
        "0-3; without deepspeed_config: the engine's ZeRO config of that stage (examples/deepspeed/zero2.json, "
        "zero3.json; default 2); with it: the file's `zero_optimization.stage`",
        one_of(0, 1, 2, 3),
    ),
    option(
        f"{DS}.gradient_accumulation_steps",
        "the same as training.gradient_accumulation_steps (different values are a config error)",
        _positive,
    ),
    section_key("output"),
    renamed_as("output.output_dir", "training_args.output_dir", as_str),
    renamed_as("output.logging_steps", "training_args.logging_steps", _positive),
    option("output.eval_steps", "`training_args.eval_steps` (as evaluation.eval_steps)", _positive),
    option("output.save_steps", "`training_args.save_steps` with `save_strategy: steps`", _positive),
    renamed_as("output.save_total_limit", "training_args.save_total_limit", _positive),
    renamed_as("output.push_to_hub", "training_args.push_to_hub", as_bool, "needs a Hugging Face token"),
    renamed_as("output.hub_model_id", "training_args.hub_model_id", as_str),
)


def same_value(b: AxolotlBuilder, first: str, second: str) -> tuple[Any, str | None]:
    """The value two keys give for one setting (the first given), or a problem when they differ."""
    given = [path for path in (first, second) if b.given(path)]
    if len(given) == 2 and b.value(first) != b.value(second):
        b.problem(second, f"{b.value(second)} differs from {first}: {b.value(first)}; they are one setting, keep one")
    return (b.value(given[0]), given[0]) if given else (None, None)


def build_training(b: AxolotlBuilder) -> None:
    micro = b.value("training.micro_batch_size", 1)
    steps, steps_path = same_value(b, "training.gradient_accumulation_steps", f"{DS}.gradient_accumulation_steps")
    total = micro * (steps or 1) * b.context.num_processes
    b.set("batchsize_conf.max_per_device_train_batch_size", micro, source="training.micro_batch_size")
    b.set("batchsize_conf.total_train_batch_size", total, source=steps_path or "training.micro_batch_size")
    if b.value("training.gradient_checkpointing"):
        b.set("training_args.activation_checkpointing", True, source="training.gradient_checkpointing")
        b.set("training_args.activation_checkpointing_kwargs", {"use_reentrant": False})


def build_data(b: AxolotlBuilder) -> None:
    fmt = b.value("dataset.format", "alpaca" if not b.has("dataset.format") else None)
    train = b.value("dataset.train_path")
    if train is None:
        if not b.has("dataset.train_path"):
            b.problem("dataset.train_path", "required key is missing (the training data: a JSONL file)")
        return
    if fmt is None:
        return
    native = FORMATS[fmt]
    entry_source = "dataset.format" if b.has("dataset.format") else "dataset.train_path"
    training = {"type": "CONCATENATION", "datasets": [{"path": train, "format": native}]}
    b.set("data_conf.training_data", training, source="dataset.train_path")
    b.maps("data_conf.training_data.datasets.0.format", entry_source)
    if b.given("dataset.eval_path"):
        validation = {"type": "CONCATENATION", "datasets": [{"path": b.value("dataset.eval_path"), "format": native}]}
        b.set("data_conf.validation_data", validation, source="dataset.eval_path")
    else:
        b.set("data_conf.validation_data", {"type": "NONE"})
    b.set("sft_args.train_on_completions_only", True)
    _preprocessing(b, fmt)


def _preprocessing(b: AxolotlBuilder, fmt: str) -> None:
    if b.value(f"{PRE}.add_eos_token") is False:
        b.problem(
            f"{PRE}.add_eos_token",
            "false: every reply is trained with the token that ends it (eos, or the chat template's end of turn) so "
            "that the model learns to stop; there is no way to leave it out here: drop the key or set true",
        )
    if b.given(f"{PRE}.add_bos_token"):
        b.notice(
            f"{PRE}.add_bos_token",
            "bos is written where the tokenizer (alpaca / oasst rows) and the chat template (chat rows) put it at "
            "inference, so training sees what inference sees; the flag changes nothing",
        )
    template = b.value(f"{PRE}.use_chat_template", True)
    if fmt in CHAT_FORMATS:
        if template is False:
            b.problem(
                f"{PRE}.use_chat_template",
                f"false: {fmt} rows are conversations and are rendered with the tokenizer's chat template; for "
                "text without a template use format alpaca (instruction / output rows)",
            )
        b.set("data_conf.chat_template_name", "keep-original", source=f"{PRE}.use_chat_template")
    elif template and b.given(f"{PRE}.use_chat_template"):
        b.notice(
            f"{PRE}.use_chat_template",
            f"not used for {fmt} rows: they are prompt + completion text, rendered without a chat template (as axolotl "
            "and TRL render them); use format custom (messages rows) for the chat template",
        )


def build_distributed(b: AxolotlBuilder) -> None:
    """DeepSpeed ZeRO → `training_args.deepspeed` (the engine fills in the batch fields, train/deepspeed.py): the
    user's file as a path, or, with zero_stage alone, the engine's config of that stage. Given both, zero_stage is
    the stage: the file is read here and its stage replaced (a notice when they differed); same stage: the path."""
    paths = [f"{DS}.deepspeed_config", f"{DS}.zero_stage"]
    if not b.value(f"{DS}.use_deepspeed"):
        unused(b, paths, "distributed.use_deepspeed is not true")
        return
    source = next((path for path in paths if b.given(path)), f"{DS}.use_deepspeed")
    stage = b.value(f"{DS}.zero_stage", DEFAULT_ZERO_STAGE)
    if not b.given(f"{DS}.deepspeed_config"):
        b.set("training_args.deepspeed", zero_stage_config(stage), source=source)
        return
    path = b.value(f"{DS}.deepspeed_config")
    if not b.given(f"{DS}.zero_stage"):
        b.set("training_args.deepspeed", path, source=source)
        return
    try:
        config = read_deepspeed_config(path)
    except UserError as error:
        b.problem(f"{DS}.deepspeed_config", "; ".join(error.problems).split(": ", 1)[-1])
        return
    if zero_stage(config) == stage:
        b.set("training_args.deepspeed", path, source=source)
        return
    b.notice(f"{DS}.zero_stage", f"ZeRO stage {stage} replaces stage {zero_stage(config)} of {path}")
    section = config.get("zero_optimization") if isinstance(config.get("zero_optimization"), dict) else {}
    b.set("training_args.deepspeed", {**config, "zero_optimization": {**section, "stage": stage}}, source=source)


def build_output(b: AxolotlBuilder) -> None:
    if b.given("output.save_steps"):
        b.set("training_args.save_strategy", "steps", source="output.save_steps")
        b.set("training_args.save_steps", b.value("output.save_steps"), source="output.save_steps")
