"""Resolved config dump (secrets masked, loads again) and the generated schema / reference."""

from __future__ import annotations

import json
from pathlib import Path

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
    "stopping",
    "eval_conf",
    "spectrum",
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
    assert again.training_args == {**cfg.training_args, "output_dir": str(Path("checkpoints").resolve())}


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


def test_dump_paths_are_absolute(full_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    full_config["data_conf"]["training_data"]["datasets"][0]["path"] = "data/a.jsonl"
    full_config["data_conf"]["validation_data"] = {"type": "CONCATENATION", "datasets": [{"path": "./v.jsonl"}]}
    full_config["training_args"].update(
        eval_strategy="no", output_dir="out", logging_dir="~/tb", deepspeed="ds.json", save_strategy="no"
    )
    full_config["run_conf"].update(model="base", tokenizer="org/hub-tokenizer")
    full_config["peft_conf"] = {"peft_type": "PRETRAINED_PEFT", "name_or_path": "./adapter"}
    del full_config["quant_conf"]
    dumped = dump_resolved_config(validate_config(full_config))
    assert dumped["data_conf"]["training_data"]["datasets"][0]["path"] == str(tmp_path / "data/a.jsonl")
    assert dumped["data_conf"]["validation_data"]["datasets"][0]["path"] == str(tmp_path / "v.jsonl")
    assert dumped["training_args"]["output_dir"] == str(tmp_path / "out")
    assert dumped["training_args"]["logging_dir"] == str(Path("~/tb").expanduser())
    assert dumped["training_args"]["deepspeed"] == str(tmp_path / "ds.json")
    assert dumped["run_conf"]["model"] == str(tmp_path / "base")  # a local directory
    assert dumped["run_conf"]["tokenizer"] == "org/hub-tokenizer"  # a Hub id stays one
    assert dumped["peft_conf"]["name_or_path"] == str(tmp_path / "adapter")


def test_resolved_config_is_accepted_back_without_provenance_or_masked_secrets(full_config):
    full_config["training_args"]["hub_token"] = "hf_abc"
    resolved = dump_resolved_config(validate_config(full_config))
    again = validate_config({**resolved, "_provenance": {"versions": {"finetuning": "0"}, "git_sha": None}})
    assert again.run_conf.model_args.token is None  # "***" is not sent anywhere as a token
    assert "hub_token" not in again.training_args
    assert "run_conf.model_args.token: '***' is a masked secret (a saved config); treated as unset" in again.notices
    resolved["run_conf"]["model_args"]["token"] = None
    del resolved["training_args"]["hub_token"]
    assert dump_resolved_config(again) == resolved  # the same config otherwise


def test_schema_lists_the_installed_training_arguments():
    from finetuning.config import DPOExperimentConfig

    training_args = config_json_schema()["properties"]["training_args"]
    assert training_args["additionalProperties"] is False  # as the validator: unknown keys are errors
    learning_rate = training_args["properties"]["learning_rate"]
    assert learning_rate["type"] == "number" and learning_rate["default"] == 5e-05 and learning_rate["description"]
    assert "adamw_torch" in training_args["properties"]["optim"]["enum"]
    assert training_args["properties"]["output_dir"]["default"] == "./checkpoints"
    assert training_args["properties"]["warmup_ratio"]["deprecated"] is True  # legacy, translated
    assert "per_device_train_batch_size" not in training_args["properties"]  # from batchsize_conf
    assert "beta" not in training_args["properties"]
    dpo = config_json_schema(DPOExperimentConfig)["properties"]["training_args"]["properties"]
    assert dpo["beta"]["default"] == 0.1 and "deviation from the reference model" in dpo["beta"]["description"]
    assert dpo["max_length"]["default"] == 2048 and dpo["max_prompt_length"]["default"] == 1536
    json.dumps(dpo)


def test_reference_lists_the_method_options():
    from finetuning.config import DPOExperimentConfig, KTOExperimentConfig

    dpo = render_config_reference(DPOExperimentConfig)
    assert "## DPOConfig options beyond TrainingArguments" in dpo
    assert "| beta | `number` | `0.1` | Parameter controlling the deviation from the reference model." in dpo
    assert "| learning_rate | `number` | `1e-06` |" in dpo  # TRL's default, in the compact table
    assert "| desirable_weight | `number` | `1.0` |" in render_config_reference(KTOExperimentConfig)
    sft = render_config_reference()
    assert "## TrainingArguments options" in sft and "| seed | `integer` | `42` | Random seed" in sft
