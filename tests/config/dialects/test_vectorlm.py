"""The VectorLM dialect (seed 001): detection, every key's translation, refusal or notice, errors at the user's keys,
`convert`, and the docs' key table."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main
from finetuning.config import ConfigError, load_any_config, validate_config
from finetuning.config.dialects import Context, detect, key_table, translate
from finetuning.config.dialects.docs import with_table
from finetuning.config.dialects.vectorlm import KEYS
from tests.conftest import REPO

EXAMPLES = [REPO / "examples" / "vectorlm-config.yaml", REPO / "examples" / "vectorlm-lora.yaml"]
SHIPPED = yaml.safe_load(EXAMPLES[0].read_text())  # VectorLM's configs/config.yaml, paths changed
CPU = Context()
GPU = Context(cuda=True, flash_attn=True)


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(SHIPPED)


def native_of(data: dict, context: Context = CPU) -> dict:
    translation = translate(data, "vectorlm", context)
    assert translation.problems == []
    return translation.native


def problems_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "vectorlm", context).problems


def notices_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "vectorlm", context).notices


def at(native: dict, path: str):
    for part in path.split("."):
        native = native[part]
    return native


def write(tmp_path: Path, data: dict, name: str = "vectorlm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- detection ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_configs_are_detected_as_vectorlm(path):
    assert detect(yaml.safe_load(path.read_text())) == "vectorlm"


# --- key by key ----------------------------------------------------------------------------------------------------


def test_shipped_config_translates_key_by_key():
    native = native_of(SHIPPED)
    assert native["method"] == "sft"
    assert native["run_conf"] == {
        "model": "demo_output/tiny-base",
        "resume_from_checkpoint": "auto",  # VectorLM resumes from output_dir's latest checkpoint
        "final_checkpoint_name": "final-model",
        "model_args": {"attn_implementation": "sdpa"},  # flash attention on a CPU: sdpa
    }
    assert native["peft_conf"] == {"peft_type": "NO_PEFT"}
    assert native["sft_args"] == {"max_seq_length": 4096, "length_handling": "truncate"}
    assert native["training_args"] == {
        "output_dir": "demo_output/vectorlm-config",
        "num_train_epochs": 1,
        "seed": 11,
        "activation_checkpointing": True,
        "max_grad_norm": 1,
        "optim": "adamw_torch",
        "learning_rate": 2.0e-5,
        "weight_decay": 0.1,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "adam_epsilon": 1.0e-5,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.05,
        "save_strategy": "steps",
        "save_steps": 0.25,
        "logging_steps": 125,  # 500 micro-batches / 4 accumulated
        "eval_strategy": "steps",
        "eval_steps": 125,
        "eval_on_start": True,
    }
    assert native["batchsize_conf"] == {
        "per_device_eval_batch_size": 8,
        "max_per_device_train_batch_size": 8,
        "total_train_batch_size": 32,
    }
    tokenized = {
        "type": "CONCATENATION",
        "datasets": [{"path": "demo_output/vectorlm-config-data", "format": "tokenized"}],
    }
    data_conf = native["data_conf"]
    assert data_conf["training_data"] == data_conf["validation_data"] == tokenized
    assert (data_conf["chat_template_name"], data_conf["missing_pad_token_strategy"]) == (
        "keep-original",
        "eos-repurpose",
    )
    assert data_conf["preprocess"] == {
        "ignore_index": -100,
        "dataset_format": "hf",
        "data_field": "text",
        "packing_type": "partial",
        "add_bos_eos_tokens": True,
        "from_disk": True,
        "load_path": "examples/data/vectorlm-raw",
        "split": "train",
        "save_path": "demo_output/vectorlm-config-data",
        "truncate": False,
    }
    assert native["wandb"] == {"project": "MedGPT", "run_name": "Llama-2-7B-chat"}


def test_translation_validates_as_native():
    cfg = validate_config(native_of(SHIPPED))
    assert cfg.training_args["learning_rate"] == 2.0e-5 and cfg.batchsize_conf.total_train_batch_size == 32


@pytest.mark.parametrize(
    ("path", "value", "native_path", "expected"),
    [
        ("train_parameters.optimizer.fused", True, "training_args.optim", "adamw_torch_fused"),
        ("train_parameters.optimizer.fused", False, "training_args.optim", "adamw_torch"),
        (
            "train_parameters.lr_scheduler_type",
            "plataeu-with-warmup",
            "training_args.lr_scheduler_type",
            "plataeu-with-warmup",
        ),
        ("train_parameters.checkpointing_enabled", False, "training_args.save_strategy", "no"),
        ("train_parameters.save_frequency", 1, "training_args.save_strategy", "epoch"),
        ("train_parameters.use_activation_checkpointing", False, "training_args", {"activation_checkpointing": None}),
        ("dataset_preprocess.seperator", "###", "data_conf.preprocess.separator", "###"),
        ("dataset_preprocess.separator", "###", "data_conf.preprocess.separator", "###"),
        ("dataset_preprocess.pre_pend", "Q: ", "data_conf.preprocess.pre_pend", "Q: "),
        ("dataset_preprocess.overlap", 4, "data_conf.preprocess.overlap", 4),
    ],
)
def test_one_key(config, path, value, native_path, expected):
    *parents, last = path.split(".")
    at(config, ".".join(parents))[last] = value
    native = native_of(config)
    if isinstance(expected, dict):  # keys that must not be set
        assert all(at(native, native_path).get(key) is None for key in expected)
    else:
        assert at(native, native_path) == expected


def test_two_epochs_spread_warmup_and_saving_over_all_steps(config):
    config["train_parameters"]["epochs"] = 2
    native = native_of(config)["training_args"]
    assert (native["num_train_epochs"], native["warmup_steps"], native["save_steps"]) == (2, 0.025, 0.125)
    assert "train_parameters.warmup_ratio: 0.05 of one epoch's steps = warmup_steps 0.025 of all 2 epochs'" in (
        notices_of(config)
    )


def test_plateau_with_warmup_keeps_the_ratio_per_epoch(config):
    config["train_parameters"].update(epochs=2, lr_scheduler_type="plateau-with-warmup")
    assert native_of(config)["training_args"]["warmup_steps"] == 0.05  # the scheduler reads it per epoch


def test_without_accumulation_steps_are_batches(config):
    del config["train_parameters"]["gradient_accumulation_steps"]
    native = native_of(config)
    assert native["training_args"]["logging_steps"] == native["training_args"]["eval_steps"] == 500
    assert native["batchsize_conf"]["total_train_batch_size"] == 8


def test_without_eval_ds_there_is_no_evaluation(config):
    del config["dataset"]["eval_ds"]
    native = native_of(config)
    assert native["data_conf"]["validation_data"] == {"type": "NONE"}
    assert not {"eval_strategy", "eval_steps", "eval_on_start"} & set(native["training_args"])
    validate_config(native)


def test_lora_config_becomes_peft_conf():
    native = native_of(yaml.safe_load(EXAMPLES[1].read_text()))
    assert native["peft_conf"] == {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "peft_kwargs": {"inference_mode": False, "r": 8, "lora_alpha": 32, "lora_dropout": 0.1},
    }
    assert "max_seq_length" not in native["sft_args"]  # the benchmark set it on its command line: native default


def test_absent_optimizer_keys_are_adamws_defaults(config):
    del config["train_parameters"]["optimizer"]
    native = native_of(config)["training_args"]
    assert (native["learning_rate"], native["weight_decay"], native["optim"]) == (1e-3, 1e-2, "adamw_torch")
    assert "adam_beta1" not in native  # 0.9 / 0.999 / 1e-8: the same in both


def test_wandb_off_leaves_no_wandb_section(config):
    config["enable_wandb_logging"] = False
    translation = translate(config, "vectorlm")
    assert "wandb" not in translation.native
    assert "wandb_config: not used: enable_wandb_logging is not true" in translation.notices


def test_wandb_keys_that_map(config):
    config["wandb_config"].update(entity="team", group="g", tags=["a"], mode="offline")
    assert native_of(config)["wandb"] == {
        "project": "MedGPT",
        "run_name": "Llama-2-7B-chat",
        "entity": "team",
        "group": "g",
        "tags": ["a"],
        "mode": "offline",
    }


# --- refusals and notices ------------------------------------------------------------------------------------------

REFUSED = [key for key in KEYS if key.fate == "refused"]
ACCEPTED = [key for key in KEYS if key.fate == "accepted" and key.handle is None]


def _with(config: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    section = config
    for part in parents:
        section = section.setdefault(part, {})
    section[last] = value
    return config


@pytest.mark.parametrize("key", REFUSED, ids=lambda key: key.path)
def test_every_refused_key_says_why_and_what_instead(config, key):
    assert problems_of(_with(config, key.path, True)) == [f"{key.path}: {key.doc}"]


def test_refusals_name_the_alternative():
    docs = {key.path: key.doc for key in REFUSED}
    assert docs["wandb_config.notes"] == "the trainer starts the W&B run; set WANDB_NOTES in the environment"
    assert "drop it" in docs["train_parameters.optimizer.amsgrad"]


@pytest.mark.parametrize("key", ACCEPTED, ids=lambda key: key.path)
def test_every_accepted_key_gives_its_notice(config, key):
    assert f"{key.path}: {key.doc}" in notices_of(_with(config, key.path, True))


def test_cpu_notices_of_the_shipped_config():
    assert notices_of(SHIPPED) == [
        "train_parameters.sharding_strategy: FULL_SHARD: one process, no sharding",
        "train_parameters.use_mp: no CUDA device here: training in fp32 (bf16 mixed precision needs a GPU)",
        "train_parameters.use_flash_attention: no CUDA device here: sdpa attention instead of flash_attention_2",
        "train_parameters.low_cpu_mem_usage: not needed: transformers loads the weights without building a random "
        "model first",
        "train_parameters.logging_steps: 500 micro-batches = 125 optimizer step(s) of 4 accumulated batches: "
        "evaluation (and at step 0) and training loss every 125 step(s)",
        "dataset.train_bs: 8 per device × 4 accumulation step(s) × 1 process(es) = batchsize_conf.total_train_batch_size "
        "32",
    ]


def test_missing_max_seq_len_is_a_notice(config):
    del config["train_parameters"]["max_seq_len"]
    assert notices_of(config)[0].startswith("train_parameters.max_seq_len: not given; sequences are cut at 2048")


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("train_parameters.save_frequency", 0, "must be a fraction of an epoch above 0 and at most 1, got 0"),
        ("train_parameters.save_frequency", 1.5, "must be a fraction of an epoch above 0 and at most 1, got 1.5"),
        ("train_parameters.save_frequency", "often", "must be a number, got 'often'"),
        ("train_parameters.warmup_ratio", 1, "must be at least 0 and below 1, got 1"),
        ("train_parameters.epochs", 1.5, "must be a whole number, got 1.5"),
        ("train_parameters.epochs", 0, "must be at least 1, got 0"),
        ("train_parameters.gradient_accumulation_steps", 0, "must be at least 1, got 0"),
        ("train_parameters.logging_steps", "x", "must be a whole number, got 'x'"),
        ("train_parameters.use_mp", "yes", "must be true or false, got 'yes'"),
        ("train_parameters.optimizer.betas", [0.9], "must be a list of two numbers [beta1, beta2], got [0.9]"),
        ("dataset.train_bs", 0, "must be at least 1, got 0"),
        ("dataset.ignore_index", -1, "only -100 is supported (the engine's loss ignores label -100), got -1"),
        ("dataset_preprocess.ignore_index", 0, "only -100 is supported (the engine's loss ignores label -100), got 0"),
    ],
)
def test_bad_values_are_errors_at_the_source_key(config, path, value, problem):
    assert problems_of(_with(config, path, value)) == [f"{path}: {problem}"]


def test_save_frequency_zero_is_a_config_error_not_a_crash(tmp_path, capsys):
    config = _with(copy.deepcopy(SHIPPED), "train_parameters.save_frequency", 0)
    assert main(["validate", str(write(tmp_path, config))]) == 2
    assert "train_parameters.save_frequency: must be a fraction of an epoch above 0 and at most 1, got 0" in (
        capsys.readouterr().err
    )


def test_checkpointing_needs_save_frequency(config):
    del config["train_parameters"]["save_frequency"]
    assert problems_of(config) == ["train_parameters.save_frequency: required when checkpointing_enabled is true"]


def test_required_keys(config):
    del config["model"], config["dataset"]["train_ds"]
    assert problems_of(config) == ["model: required key is missing", "dataset.train_ds: required key is missing"]


def test_both_separator_spellings_is_an_error(config):
    config["dataset_preprocess"].update(seperator="#", separator="#")
    assert problems_of(config) == ["dataset_preprocess.seperator: both seperator and separator are given; keep one"]


def test_wandb_needs_a_project(config):
    del config["wandb_config"]["project"]
    assert problems_of(config) == [
        "wandb_config.project: required when enable_wandb_logging is true (the W&B project the run logs to)"
    ]


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("modle", "'model'"),
        ("train_parameters.epohcs", "'epochs'"),
        ("train_parameters.optimizer.weight_decy", "'weight_decay'"),
        ("dataset.train_bss", "'train_bs'"),
        ("dataset_preprocess.data_feild", "'data_field'"),
        ("wandb_config.projet", "'project'"),
    ],
)
def test_unknown_keys_have_a_did_you_mean(config, path, hint):
    assert f"{path}: unknown key; did you mean {hint}?" in problems_of(_with(config, path, 1))


# --- errors found by the native validation speak VectorLM -------------------------------------------------------------


def load_problems(tmp_path: Path, data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_any_config(write(tmp_path, data))
    return info.value.problems


def test_native_problems_are_reported_at_the_source_key(tmp_path, config):
    config["train_parameters"]["optimizer"]["lr"] = "abc"
    config["train_parameters"]["max_seq_len"] = 0
    config["dataset_preprocess"]["truncate"] = True  # with packing_type: partial
    problems = load_problems(tmp_path, config)
    assert "train_parameters.optimizer.lr: must be a valid number, got 'abc'" in problems
    assert "train_parameters.max_seq_len: must be greater than or equal to 1" in problems
    assert any(p.startswith("dataset_preprocess: truncate: true and packing_type: partial") for p in problems)
    assert not any(p.startswith(("training_args", "sft_args", "data_conf")) for p in problems)


def test_lora_option_problems_are_at_lora_peft_config(tmp_path):
    config = yaml.safe_load(EXAMPLES[1].read_text())
    config["train_parameters"]["lora_peft_config"]["lora_alhpa"] = 32
    assert "train_parameters.lora_peft_config.lora_alhpa: unknown key; did you mean 'lora_alpha'?" in (
        load_problems(tmp_path, config)
    )


def test_translation_and_native_problems_are_reported_together(tmp_path, config):
    config["train_parameters"]["save_frequency"] = 0
    config["train_parameters"]["optimizer"]["lr"] = "abc"
    config["dataset"]["train_bs"] = "eight"  # its batchsize_conf is then missing: not reported as such
    assert load_problems(tmp_path, config) == [
        "train_parameters.save_frequency: must be a fraction of an epoch above 0 and at most 1, got 0",
        "dataset.train_bs: must be a whole number, got 'eight'",
        "train_parameters.optimizer.lr: must be a valid number, got 'abc'",
    ]


def test_dpo_command_refuses_a_vectorlm_config(tmp_path, capsys):
    assert main(["dpo", str(write(tmp_path, SHIPPED))]) == 2
    assert "this config is for `sft`; run it with `finetuning sft" in capsys.readouterr().err


# --- convert ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_convert_prints_native_yaml_that_loads_as_the_same_config(tmp_path, capsys, caplog, path):
    assert main(["convert", str(path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# {path} (vectorlm dialect) as a native config, translated for 1 process(es)")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]  # logged: on stderr
    assert any(message.startswith("dataset.train_bs: 8 per device") for message in warnings)
    converted = tmp_path / "native.yaml"
    converted.write_text(printed, encoding="utf-8")
    native = load_any_config(converted)
    assert native.model_dump() == load_any_config(path).model_dump()


# --- docs ----------------------------------------------------------------------------------------------------------


def test_docs_table_is_the_dialects_key_table():
    page = (REPO / "docs" / "dialects" / "vectorlm.md").read_text(encoding="utf-8")
    assert page == with_table(page, "vectorlm"), "run: python -m finetuning.config.dialects.docs"
    for key in KEYS:
        assert key.section or f"`{key.path}`" in key_table("vectorlm")


def test_readme_mentions_dialects_and_convert():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/dialects/vectorlm.md" in readme and "finetuning convert" in readme
