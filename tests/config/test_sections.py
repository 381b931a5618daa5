"""Per-section checks: PEFT variants, quantization, cross-section rules, tracking, overrides."""

from __future__ import annotations

import pytest

from finetuning.config import ConfigError, validate_config
from finetuning.config.peft import GenericPeftConfig, NoPeftConfig, PretrainedPeftConfig


def problems_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return info.value.problems


def test_no_peft(minimal_config):
    assert isinstance(validate_config(minimal_config).peft_conf, NoPeftConfig)


def test_pretrained_peft(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "PRETRAINED_PEFT", "name_or_path": "/adapters/a"}
    cfg = validate_config(minimal_config)
    assert isinstance(cfg.peft_conf, PretrainedPeftConfig)
    assert cfg.peft_conf.name_or_path == "/adapters/a"


def test_pretrained_peft_requires_name_or_path(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "PRETRAINED_PEFT"}
    assert problems_of(minimal_config) == ["peft_conf.name_or_path: required key is missing"]


def test_no_peft_rejects_adapter_keys(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "NO_PEFT", "peft_kwargs": {}}
    assert problems_of(minimal_config) == ["peft_conf.peft_kwargs: unknown key"]


def test_lora_with_kwargs(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "target_modules": ["q_proj"]}}
    cfg = validate_config(minimal_config)
    assert isinstance(cfg.peft_conf, GenericPeftConfig)
    assert cfg.peft_conf.task_type == "CAUSAL_LM"
    peft_config = cfg.peft_conf.get_peft_config()
    assert type(peft_config).__name__ == "LoraConfig"
    assert peft_config.r == 8


def test_newer_installed_peft_type_is_accepted(minimal_config):
    peft = pytest.importorskip("peft")
    extra = [p.value for p in peft.PeftType if p.value not in {"LORA", "NO_PEFT"}]
    minimal_config["peft_conf"] = {"peft_type": extra[-1]}
    assert validate_config(minimal_config).peft_conf.peft_type == extra[-1]


def test_unknown_peft_type_suggests(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORAA"}
    assert problems_of(minimal_config) == ["peft_conf.peft_type: unknown peft_type 'LORAA'; did you mean 'LORA'?"]


def test_missing_peft_type(minimal_config):
    minimal_config["peft_conf"] = {"name_or_path": "x"}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("peft_conf: peft_type is required")


def test_unknown_task_type(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORA", "task_type": "CAUSAL"}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("peft_conf.task_type: must be ")


def test_quantization_with_full_finetuning_is_an_error(minimal_config):
    minimal_config["quant_conf"] = {"quantization_type": "bits-and-bytes", "load_in_4bit": True}
    (problem,) = problems_of(minimal_config)
    assert "quantized model cannot be fully fine-tuned" in problem


def test_quantization_4_and_8_bit(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORA"}
    minimal_config["quant_conf"] = {"quantization_type": "bits-and-bytes", "load_in_4bit": True, "load_in_8bit": True}
    assert problems_of(minimal_config) == ["quant_conf: load_in_4bit and load_in_8bit are both true; choose one"]


def test_quantization_bad_quant_type(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORA"}
    minimal_config["quant_conf"] = {"quantization_type": "bits-and-bytes", "load_in_4bit": True}
    minimal_config["quant_conf"]["bnb_4bit_quant_type"] = "int4"
    assert problems_of(minimal_config) == ["quant_conf.bnb_4bit_quant_type: must be 'fp4' or 'nf4', got 'int4'"]


def test_explicit_no_quantization(minimal_config):
    minimal_config["quant_conf"] = {"quantization_type": "no-quantization"}
    assert validate_config(minimal_config).quant_conf.quantization_type == "no-quantization"


def test_tracking_requires_experiment_name(minimal_config):
    minimal_config["tracking"] = {"mlflow_server_uri": "file:///tmp/mlruns"}
    assert problems_of(minimal_config) == ["tracking.experiment_name: required key is missing"]


def test_overrides_checks(minimal_config):
    minimal_config["overrides"] = {"num_train_epochs": 0, "lr_multiplier": 2, "lr_batch_size_scaling": "cubic"}
    problems = problems_of(minimal_config)
    assert "overrides.num_train_epochs: must be greater than 0" in problems
    assert any(p.startswith("overrides.lr_batch_size_scaling: must be ") for p in problems)


def test_model_args_quantization_config_rejected(minimal_config):
    minimal_config["run_conf"]["model_args"] = {"quantization_config": {}}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("run_conf.model_args: ") and "quant_conf" in problem


def test_bits_and_bytes_needs_a_bit_width(minimal_config):
    minimal_config["peft_conf"] = {"peft_type": "LORA"}
    minimal_config["quant_conf"] = {"quantization_type": "bits-and-bytes"}
    assert problems_of(minimal_config) == [
        "quant_conf: bits-and-bytes needs load_in_4bit: true or load_in_8bit: true (or drop quant_conf)"
    ]


@pytest.mark.parametrize("rank", [0, -4])
def test_adapter_rank_must_be_positive(minimal_config, rank):
    minimal_config["peft_conf"] = {"peft_type": "LORA", "peft_kwargs": {"r": rank}}
    assert problems_of(minimal_config) == [f"peft_conf.peft_kwargs.r: must be greater than or equal to 1, got {rank}"]


@pytest.mark.parametrize(
    ("training_args", "overrides", "ok"),
    [
        ({"num_train_epochs": 0}, {}, False),
        ({"num_train_epochs": -1, "max_steps": -1}, {}, False),
        ({"num_train_epochs": 0, "max_steps": 10}, {}, True),
        ({"num_train_epochs": 0}, {"num_train_epochs": 2}, True),
    ],
)
def test_a_run_of_zero_steps_is_an_error(minimal_config, training_args, overrides, ok):
    minimal_config["training_args"] = training_args
    minimal_config["overrides"] = overrides
    if ok:
        validate_config(minimal_config)
    else:
        (problem,) = problems_of(minimal_config)
        assert problem.startswith("training_args.num_train_epochs: must be greater than 0 (or set max_steps)")
