"""Resolved config dump (secrets masked, loads again) and the generated schema / reference."""

from __future__ import annotations

import json

import yaml

from finetuning.config import (
    SFTExperimentConfig,
    config_json_schema,
    dump_resolved_config,
    load_config,
    render_config_reference,
    validate_config,
)

TOP_LEVEL = [
    "method",
    "data_conf",
    "training_args",
    "overrides",
    "batchsize_conf",
    "peft_conf",
    "run_conf",
    "tracking",
    "wandb",
    "quant_conf",
    "sft_args",
]


def test_secrets_are_masked(full_config):
    full_config["training_args"]["hub_token"] = "hf_abc"
    full_config["run_conf"]["model_args"]["my_api_key"] = "k"
    dumped = dump_resolved_config(validate_config(full_config))
    assert dumped["run_conf"]["model_args"]["token"] == "***"
    assert dumped["run_conf"]["model_args"]["my_api_key"] == "***"
    assert dumped["training_args"]["hub_token"] == "***"
    assert "hf_abc" not in json.dumps(dumped) and "hf_secret_value" not in json.dumps(dumped)
    # Not secrets, though their names contain "token".
    assert dumped["run_conf"]["use_fast_tokenizer"] is True
    assert dumped["data_conf"]["missing_pad_token_strategy"] == "bos-repurpose"


def test_dump_is_yaml_and_loads_again(full_config, write_yaml):
    full_config["training_args"]["logging_dir"] = "/tb"
    cfg = validate_config(full_config)
    dumped = dump_resolved_config(cfg)
    assert dumped["training_args"]["logging_dir"] == "/tb"
    dumped["run_conf"]["model_args"]["token"] = None  # the masked value is not a usable token
    again = load_config(write_yaml(yaml.safe_dump(dumped)))
    assert again.logging_dir == "/tb"
    assert again.data_conf == cfg.data_conf
    assert again.training_args == cfg.training_args


def test_json_schema_is_serialisable_and_complete():
    schema = config_json_schema()
    json.dumps(schema)
    assert list(schema["properties"]) == TOP_LEVEL
    assert set(schema["required"]) == {
        "data_conf",
        "training_args",
        "batchsize_conf",
        "peft_conf",
        "run_conf",
        "sft_args",
    }
    assert schema["properties"]["overrides"]["default"] == {
        "num_train_epochs": None,
        "lr_multiplier": 1.0,
        "lr_batch_size_scaling": "none",
    }
    assert schema["properties"]["quant_conf"]["default"] == {"quantization_type": "no-quantization"}
    assert "LORA" in schema["$defs"]["GenericPeftConfig"]["properties"]["peft_type"]["enum"]


def test_reference_has_a_table_per_model():
    text = render_config_reference()
    for name in ("ChatTrainValidConfig", "WeightedMixDataInput", "RunConfig", "ModelArguments", "SFTArguments"):
        assert f"## {name}" in text
    assert "| max_seq_length | `integer` |  | `2048` |" in text
    assert "Local path to a JSONL file in the finetuning data format" in text


def test_config_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, finetuning.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_class_exported():
    assert SFTExperimentConfig.model_fields["method"].default == "sft"
