"""The axolotl dialect (seed 002): detection, the shipped examples, every option's fate, every refusal and notice,
unknown keys, errors at the user's keys, `convert`, and the docs' key table. (Model keys: test_axolotl_model.py;
training-loop keys: test_axolotl_training.py; data and rl keys: test_axolotl_data.py.)"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import pytest
import yaml

from finetuning.cli import main
from finetuning.config import load_any_config, validate_config
from finetuning.config.dialects import Context, detect, key_table, translate
from finetuning.config.dialects import axolotl as dialect
from finetuning.config.dialects.docs import with_table
from finetuning.config.loading import config_class_for
from tests.conftest import REPO, write_yaml

EXAMPLES = sorted((REPO / "examples" / "axolotl").iterdir())
LORA_1B = REPO / "examples" / "axolotl" / "llama-3-lora-1b.yml"
SHIPPED = yaml.safe_load(LORA_1B.read_text())
CPU = Context()
GPU = Context(cuda=True, flash_attn=True)
BASE = {"base_model": "m", "learning_rate": 1e-4, "datasets": [{"path": "d.jsonl", "type": "alpaca"}]}


def config(**changes) -> dict:
    """BASE with top-level changes (None removes a key)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def native_of(data: dict, context: Context = CPU) -> dict:
    translation = translate(data, "axolotl", context)
    assert translation.problems == []
    return translation.native


def problems_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "axolotl", context).problems


def notices_of(data: dict, context: Context = CPU) -> list[str]:
    return translate(data, "axolotl", context).notices


def write(tmp_path: Path, data: dict) -> Path:
    return write_yaml(tmp_path / "axolotl.yml", data)


# --- detection -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_are_axolotl_and_translate_without_problems(path):
    data = yaml.safe_load(path.read_text())
    assert detect(data) == "axolotl"
    assert translate(data, "axolotl", CPU).problems == []


def test_native_and_vectorlm_configs_never_match_and_axolotl_matches_only_itself():
    from tests.config.conftest import MINIMAL_CONFIG
    from tests.config.dialects.test_vectorlm import SHIPPED as VECTORLM

    assert not dialect.matches(MINIMAL_CONFIG) and not dialect.matches(VECTORLM)
    assert detect(BASE) == "axolotl"


# --- the shipped LoRA example, key by key ----------------------------------------------------------------------------


def test_lora_1b_translates_key_by_key():
    native = native_of(SHIPPED)
    assert native["method"] == "sft"
    assert native["run_conf"] == {
        "model": "demo_output/tiny-llama3",
        "special_tokens": {"pad_token": "<|end_of_text|>"},
        "model_args": {"torch_dtype": "float32", "attn_implementation": "sdpa"},  # CPU: fp32, sdpa
    }
    assert native["peft_conf"] == {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "peft_kwargs": {
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "target_modules": ["gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"],
        },
    }
    assert native["data_conf"] == {
        "training_data": {
            "type": "CONCATENATION",
            "datasets": [{"path": "examples/data/axolotl-alpaca.jsonl", "format": "alpaca"}],
        },
        "validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1},
        "missing_pad_token_strategy": "eos-repurpose",
        "chat_template_name": "keep-original",
    }
    assert native["sft_args"] == {
        "max_seq_length": 2048,
        "train_on_completions_only": True,
        "packing": True,
        "eval_packing": True,
    }
    assert native["training_args"] == {
        "output_dir": "./outputs/lora-out",
        "learning_rate": 0.0002,
        "optim": "adamw_bnb_8bit",  # adamw_8bit
        "weight_decay": 0.0,
        "num_train_epochs": 1,
        "warmup_steps": 0.1,
        "logging_steps": 1,
        "lr_scheduler_type": "cosine",
        "save_strategy": "epoch",  # saves_per_epoch 1 of 1 epoch
        "save_total_limit": 4,
        "eval_strategy": "steps",
        "eval_steps": 0.25,  # evals_per_epoch 4
        "eval_on_start": True,
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
    }
    assert native["batchsize_conf"] == {"max_per_device_train_batch_size": 2, "total_train_batch_size": 4}
    assert native["stopping"] == {"loss_threshold": 5.0, "loss_patience": 3}
    assert "wandb" not in native  # wandb_project: (empty)


def test_lora_1b_notices_on_a_cpu():
    assert notices_of(SHIPPED) == [
        "bf16: auto: no CUDA device here, training in fp32",
        "attn_implementation: no CUDA device here: sdpa attention instead of flash_attention_2",
        "micro_batch_size: 2 per device × 2 accumulation step(s) × 1 process(es) = "
        "batchsize_conf.total_train_batch_size 4",
        "evals_per_epoch: 4 per epoch × 1 epoch(s): eval_steps 0.25 of all steps",
    ]


def test_lora_1b_on_a_gpu_trains_in_bf16_with_flash_attention():
    native = native_of(SHIPPED, GPU)
    assert native["run_conf"]["model_args"] == {"torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2"}
    assert native["training_args"]["bf16"] is True and native["training_args"]["tf32"] is False
    assert "bf16: auto: bf16 on this CUDA device" in notices_of(SHIPPED, GPU)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_translations_validate_as_native(path):
    native = native_of(yaml.safe_load(path.read_text()))
    cfg = validate_config(native, config_class_for(native["method"]))
    assert cfg.method == {"dpo": "dpo", "kto": "kto"}.get(native["method"], "sft")


# --- every option of the seed and of axolotl's examples has a fate -------------------------------------------------


def seed_text() -> tuple[str, str]:
    """Seed 002's text: its options, and its list of optimizers."""
    seed = next((REPO.parent / "shared" / "seeds").glob("002_*.txt"), None)
    if seed is None:
        pytest.skip("the seed texts are not next to the repository")
    text = seed.read_text(encoding="utf-8")
    head, _, rest = text.partition("### Available Optimizers")
    optimizers, _, tail = rest.partition("## Notes")
    return head + tail, optimizers


def seed_optimizers() -> list[str]:
    return re.findall(r"^- `([a-z0-9_]+)`:", seed_text()[1], re.M)


def _seed_options() -> set[str]:
    text = seed_text()[0]
    options = set(re.findall(r"^\| `([a-z0-9_]+)`", text, re.M))  # the tables' options
    options |= set(re.findall(r"^- `([a-z0-9_]+)`:", text, re.M))  # the "Advanced features" lists
    return options | set(json_keys(text))


def json_keys(text: str) -> list[str]:
    """The option names of the seed's example request (its `args`)."""
    args = text.split('"args": {', 2)[-1]
    return re.findall(r'^\s{6}"([a-z0-9_]+)":', args, re.M)


def test_every_option_of_the_seed_has_a_fate():
    known = {key.path for key in dialect.KEYS}
    options = _seed_options()
    assert {"base_model", "micro_batch_size", "wandb_run_id", "torch_compile", "special_tokens"} <= options
    assert sorted(option for option in options if option not in known) == []


def test_every_key_of_axolotls_examples_has_a_fate():
    known = {key.path for key in dialect.KEYS}
    entry_keys = {key.path.removeprefix("datasets[].") for key in dialect.KEYS if key.path.startswith("datasets[]")}
    for path in EXAMPLES:
        data = yaml.safe_load(path.read_text())
        assert set(data) <= known, path.name
        assert all(set(entry) <= entry_keys for entry in data["datasets"]), path.name


# --- refusals and notices, key by key --------------------------------------------------------------------------------

REFUSED = [key for key in dialect.KEYS if key.fate == "refused" and not key.path.startswith("datasets[]")]
ACCEPTED = [key for key in dialect.KEYS if key.fate == "accepted" and not key.path.startswith("datasets[]")]


def _with(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    section = data
    for part in parents:
        section = section.setdefault(part, {})
    section[last] = value
    return data


@pytest.mark.parametrize("key", REFUSED, ids=lambda key: key.path)
def test_every_refused_key_says_why_and_what_instead(key):
    assert problems_of(_with(config(), key.path, True)) == [f"{key.path}: {key.doc}"]


@pytest.mark.parametrize("key", REFUSED, ids=lambda key: key.path)
def test_a_refused_option_switched_off_asks_for_nothing(key):
    assert problems_of(_with(config(), key.path, False)) == []
    assert problems_of(_with(config(), key.path, None)) == []


@pytest.mark.parametrize("key", ACCEPTED, ids=lambda key: key.path)
def test_every_accepted_key_gives_its_notice(key):
    value = key.path != "shuffle_merged_datasets"  # its notice is for false (true is axolotl's default)
    assert f"{key.path}: {key.doc}" in notices_of(_with(config(), key.path, value))


def test_refusals_name_the_alternative():
    docs = {key.path: key.doc for key in REFUSED}
    assert docs["xformers_attention"] == "xformers is not supported; use flash_attention or sdp_attention"
    assert "max_memory" in docs["gpu_memory_limit"] and "gradient_accumulation_steps" in docs["batch_size"]
    assert "WANDB_RUN_ID" in docs["wandb_run_id"]


# --- unknown keys, required keys, values as axolotl reads them -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (config(lora_alhpa=16), "lora_alhpa: unknown key; did you mean 'lora_alpha'?"),
        (
            config(wandb_projct=None) | {"wandb_projct": None},
            "wandb_projct: unknown key; did you mean 'wandb_project'?",
        ),
        (config(special_tokens={"pad_tokn": "x"}), "special_tokens.pad_tokn: unknown key; did you mean 'pad_token'?"),
        (
            config(datasets=[{"path": "d.jsonl", "type": "alpaca", "feild": "x"}]),
            "datasets[0].feild: unknown key; did you mean 'field'?",
        ),
    ],
)
def test_unknown_keys_have_a_did_you_mean_even_when_empty(data, problem):
    assert problem in problems_of(data)


def test_required_keys():
    assert problems_of({"base_model": "m"}) == [
        "datasets: required key is missing",
        "learning_rate: required key is missing",
    ]


def test_numbers_written_as_yaml_strings_are_numbers_as_in_axolotl():
    native = native_of(yaml.safe_load("base_model: m\nlearning_rate: 2e-5\nweight_decay: 1e-2\n") | BASE_DATA)
    assert (native["training_args"]["learning_rate"], native["training_args"]["weight_decay"]) == (2e-5, 0.01)
    assert problems_of(config(learning_rate="fast")) == ["learning_rate: must be a number, got 'fast'"]


BASE_DATA = {"datasets": BASE["datasets"]}


# --- errors at the user's keys ---------------------------------------------------------------------------------------


def test_native_problems_are_reported_at_the_axolotl_key(tmp_path):
    from finetuning.config import ConfigError
    from finetuning.config.loading import load_config_file

    data = config(
        lr_scheduler="cosinee",
        lora_target_modules=["q_proj"],
        adapter="lora",
        datasets=[{"path": "d.jsonl", "type": "chat_template", "roles": {"tool": ["tool"]}}],
    )
    with pytest.raises(ConfigError) as info:
        load_config_file(write(tmp_path, data))
    problems = info.value.problems
    assert any(p.startswith("lr_scheduler: ") and "cosinee" in p for p in problems), problems
    assert any(p.startswith("datasets[0].roles") for p in problems), problems
    assert not [p for p in problems if p.startswith(("training_args", "data_conf"))]


def test_sft_command_refuses_an_rl_config(tmp_path, capsys):
    data = config(rl="dpo", datasets=[{"path": "d.jsonl", "type": "chatml.intel"}])
    assert main(["sft", str(write(tmp_path, data))]) == 2
    assert "this config is for `dpo`; run it with `finetuning dpo" in capsys.readouterr().err


# --- convert -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [LORA_1B, REPO / "examples" / "axolotl" / "llama-3-qlora-1b-kto.yaml"], ids=str)
def test_convert_prints_native_yaml_that_loads_as_the_same_config(tmp_path, capsys, caplog, path):
    assert main(["convert", str(path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# {path} (axolotl dialect) as a native config, translated for 1 process(es)")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(message.startswith("micro_batch_size: 2 per device") for message in warnings)
    converted = tmp_path / "native.yaml"
    converted.write_text(printed, encoding="utf-8")
    assert load_any_config(converted).model_dump() == load_any_config(path).model_dump()


def test_convert_of_an_axolotl_config_loads_no_torch():
    """Translation imports nothing heavy: `convert` of a full fine-tune starts as fast as for a native config (once
    the trainer field table is cached, as after any earlier command; an adapter's options are checked by peft)."""
    from finetuning.config.trainer_fields import trainer_fields
    from tests.test_startup import probe

    trainer_fields("sft")
    result, stderr = probe("convert", str(REPO / "examples" / "axolotl" / "mistral-config.yml"))
    assert result == {"code": 0, "heavy": []}, stderr
    assert "config dialect: axolotl" in stderr


# --- docs ----------------------------------------------------------------------------------------------------------


def test_docs_table_is_the_dialects_key_table():
    page = (REPO / "docs" / "dialects" / "axolotl.md").read_text(encoding="utf-8")
    assert page == with_table(page, "axolotl"), "run: python -m finetuning.config.dialects.docs"
    for key in dialect.KEYS:
        assert key.section or f"`{key.path}`" in key_table("axolotl")


def test_readme_mentions_the_axolotl_dialect():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/dialects/axolotl.md" in readme
