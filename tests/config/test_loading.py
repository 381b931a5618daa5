"""Loading configs: valid shapes, defaults, and error reporting (paths, did-you-mean, all problems at once)."""

from __future__ import annotations

import pytest

from finetuning.config import ConfigError, SFTExperimentConfig, load_config, validate_config
from finetuning.config.data import AutoSplitDataInput, ConcatenationDataInput, NoneDataInput, WeightedMixDataInput
from finetuning.config.loading import read_yaml
from finetuning.config.peft import GenericPeftConfig
from finetuning.config.quant import BnBQuantizationConfig, NoQuantizationConfig


def problems_of(data, config_class=SFTExperimentConfig) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data, config_class)
    return info.value.problems


def test_full_config_in_seed_shape_loads(write_yaml, full_config):
    cfg = load_config(write_yaml(full_config))
    assert isinstance(cfg, SFTExperimentConfig)
    assert cfg.method == "sft"
    assert isinstance(cfg.data_conf.training_data, WeightedMixDataInput)
    assert [d.sampling_weight for d in cfg.data_conf.training_data.datasets] == [4.5, 1.0]
    assert isinstance(cfg.data_conf.validation_data, AutoSplitDataInput)
    assert cfg.data_conf.validation_data.ratio == 0.1
    assert isinstance(cfg.peft_conf, GenericPeftConfig)
    assert cfg.peft_conf.peft_kwargs["r"] == 16
    assert isinstance(cfg.quant_conf, BnBQuantizationConfig)
    assert cfg.quant_conf.bnb_4bit_quant_type == "nf4"
    assert cfg.run_conf.model_args.torch_dtype == "bfloat16"
    assert cfg.run_conf.resume_from_checkpoint == "auto"
    assert cfg.tracking is not None and cfg.tracking.hf_mlflow_log_artifacts == "False"
    assert cfg.training_args["lr_scheduler_type"] == "cosine"
    assert cfg.training_args["output_dir"] == "./checkpoints"
    assert cfg.notices == []


def test_defaults_follow_the_seed(minimal_config):
    cfg = validate_config(minimal_config)
    assert cfg.method == "sft"
    assert cfg.overrides.model_dump() == {
        "num_train_epochs": None,
        "lr_multiplier": 1.0,
        "lr_batch_size_scaling": "none",
    }
    assert isinstance(cfg.quant_conf, NoQuantizationConfig)
    assert cfg.tracking is None
    data = cfg.data_conf
    assert isinstance(data.training_data, ConcatenationDataInput)
    assert data.training_data.data_type == "ChatConversation"
    assert isinstance(data.validation_data, NoneDataInput)
    assert (data.chat_template_name, data.padding_side, data.missing_pad_token_strategy) == (
        "mistral-with-system",
        "right",
        "bos-repurpose",
    )
    run = cfg.run_conf
    assert run.model == "/local_resources/basemodel"
    assert run.tokenizer is None
    assert run.use_fast_tokenizer is True
    assert run.resume_from_checkpoint is False
    assert run.final_checkpoint_name == "checkpoint-final"
    assert run.model_args.torch_dtype == "auto"
    assert run.model_args.device_map is None
    assert run.model_args.revision == "main"
    assert run.model_args.trust_remote_code is False
    assert cfg.sft_args.model_dump() == {
        "max_seq_length": 2048,
        "save_name_if_new_basemodel": "checkpoint-new-basemodel",
        "train_on_completions_only": False,
        "length_handling": "filter",
        "packing": False,
        "eval_packing": True,
    }
    assert cfg.batchsize_conf.per_device_eval_batch_size is None
    assert cfg.logging_dir == "./logs"


def test_split_and_mix_defaults(minimal_config):
    minimal_config["data_conf"]["training_data"] = {"type": "PRECOMPUTE_WEIGHTED_MIX", "datasets": [{"path": "a"}]}
    minimal_config["data_conf"]["validation_data"] = {"type": "AUTO_SPLIT"}
    cfg = validate_config(minimal_config)
    assert cfg.data_conf.training_data.seed == 19851243
    assert cfg.data_conf.validation_data.ratio == 0.2
    assert cfg.data_conf.validation_data.seed == 1289525893


def test_output_dir_from_environment(minimal_config, monkeypatch):
    monkeypatch.setenv("CHECKPOINTS_PATH", "/ckpt")
    monkeypatch.setenv("LOGS_PATH", "/logs")
    cfg = validate_config(minimal_config)
    assert cfg.training_args["output_dir"] == "/ckpt"
    assert cfg.logging_dir == "/logs"


def test_model_args_extra_keys_pass_through(minimal_config):
    minimal_config["run_conf"]["model_args"] = {"rope_scaling": {"type": "linear"}, "device_map": {"": 0}}
    cfg = validate_config(minimal_config)
    assert cfg.run_conf.model_args.model_extra == {"rope_scaling": {"type": "linear"}}
    assert cfg.run_conf.model_args.device_map == {"": 0}


def test_unknown_top_level_key_suggests(minimal_config):
    minimal_config["sft_arg"] = {}
    problems = problems_of(minimal_config)
    assert "sft_arg: unknown key; did you mean 'sft_args'?" in problems


def test_unknown_nested_key_suggests(minimal_config):
    minimal_config["data_conf"]["training_data"]["datasets"][0]["pth"] = "x"
    minimal_config["run_conf"]["use_fast_tokeniser"] = False
    problems = problems_of(minimal_config)
    assert "data_conf.training_data.datasets[0].pth: unknown key; did you mean 'path'?" in problems
    assert "run_conf.use_fast_tokeniser: unknown key; did you mean 'use_fast_tokenizer'?" in problems


def test_wrong_value_deep_in_tree_has_exact_path(full_config):
    full_config["data_conf"]["training_data"]["datasets"][1]["sampling_weight"] = -1
    problems = problems_of(full_config)
    assert problems == ["data_conf.training_data.datasets[1].sampling_weight: must be greater than or equal to 0"]


def test_many_problems_reported_at_once(full_config):
    full_config["data_conf"]["training_data"]["datasets"][1]["sampling_weight"] = -1
    full_config["batchsize_conf"]["total_train_batch_size"] = 0
    full_config["sft_args"]["max_seq_len"] = 10
    full_config["training_args"]["learning_rte"] = 1e-4
    del full_config["run_conf"]["model"]  # has a default: not a problem
    del full_config["peft_conf"]["task_type"]  # has a default: not a problem
    del full_config["data_conf"]["validation_data"]
    problems = problems_of(full_config)
    assert set(problems) == {
        "data_conf.training_data.datasets[1].sampling_weight: must be greater than or equal to 0",
        "data_conf.validation_data: required key is missing",
        "batchsize_conf.total_train_batch_size: must be greater than or equal to 1",
        "sft_args.max_seq_len: unknown key; did you mean 'max_seq_length'?",
        "training_args.learning_rte: unknown key; did you mean 'learning_rate'?",
    }


def test_wrong_data_input_type_names_the_tag(minimal_config):
    minimal_config["data_conf"]["validation_data"] = {"type": "PRECOMPUTE_WEIGHTED_MIX", "datasets": [{"path": "a"}]}
    (problem,) = problems_of(minimal_config)
    assert problem == (
        "data_conf.validation_data.type: must be 'AUTO_SPLIT', 'CONCATENATION' or 'NONE', got 'PRECOMPUTE_WEIGHTED_MIX'"
    )


def test_data_checks(minimal_config):
    minimal_config["data_conf"]["training_data"] = {
        "type": "PRECOMPUTE_WEIGHTED_MIX",
        "datasets": [{"path": "a", "sampling_weight": 0}, {"path": "b", "sampling_weight": 0.0}],
    }
    minimal_config["data_conf"]["validation_data"] = {"type": "AUTO_SPLIT", "ratio": 1.0}
    problems = problems_of(minimal_config)
    assert any(p.startswith("data_conf.training_data: all sampling weights are zero") for p in problems)
    assert "data_conf.validation_data.ratio: must be less than 1" in problems


def test_empty_dataset_list(minimal_config):
    minimal_config["data_conf"]["training_data"]["datasets"] = []
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("data_conf.training_data.datasets: ")


def test_union_leaf_error_has_clean_path(minimal_config):
    minimal_config["run_conf"]["resume_from_checkpoint"] = [1]
    problems = problems_of(minimal_config)
    assert problems and all(p.startswith("run_conf.resume_from_checkpoint: ") for p in problems)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_mentions_line(write_yaml):
    path = write_yaml("data_conf:\n  training_data: {type: CONCATENATION\nsft_args: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert "invalid YAML at line 3" in problem


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_mapping(write_yaml, text):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write_yaml(text))


def test_config_error_message_lists_all(minimal_config):
    minimal_config["x"] = 1
    minimal_config["y"] = 2
    with pytest.raises(ConfigError) as info:
        validate_config(minimal_config, source="c.yaml")
    text = str(info.value)
    assert "c.yaml" in text and "x: unknown key" in text and "y: unknown key" in text


def test_union_alternatives_are_one_line(minimal_config):
    minimal_config["run_conf"]["model_args"] = {"device_map": [1]}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("run_conf.model_args.device_map: must be ") and " or " in problem


def test_duplicate_keys_are_an_error_with_both_lines(write_yaml):
    path = write_yaml("sft_args:\n  max_seq_length: 64\nrun_conf: {}\nsft_args:\n  max_seq_length: 128\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path.resolve()}: invalid YAML at line 4, column 1: duplicate key 'sft_args' (first on line 1)"
    ]


def test_merge_keys_may_be_overridden(write_yaml):
    data = read_yaml(write_yaml("base: &base {a: 1, b: 2}\nother:\n  <<: *base\n  b: 3\n"))
    assert data["other"] == {"a": 1, "b": 3}


def test_file_problems_name_the_resolved_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"method: sft\n# caf\xe9\n")
    for argument, problem in [
        ("missing.yaml", f"config file not found: {tmp_path / 'missing.yaml'}"),
        (".", f"{tmp_path}: is a directory, not a config file"),
        ("latin1.yaml", f"{tmp_path / 'latin1.yaml'}: invalid YAML at line 2: not valid UTF-8"),
    ]:
        with pytest.raises(ConfigError) as info:
            read_yaml(argument)
        assert info.value.problems == [problem]


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfmethod: sft\n")
    assert read_yaml(path) == {"method": "sft"}


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("batchsize_conf", "total_train_batch_size", True, "must be a number, got true"),
        ("batchsize_conf", "total_train_batch_size", "eight", "must be a valid integer, got 'eight'"),
        ("sft_args", "max_seq_length", 10.5, "must be a valid integer, got 10.5"),
        ("sft_args", "train_on_completions_only", "maybe", "must be a valid boolean, got 'maybe'"),
        ("data_conf", "padding_side", "middle", "must be 'right' or 'left', got 'middle'"),
    ],
)
def test_type_errors_show_the_value_given(minimal_config, section, key, value, problem):
    minimal_config[section][key] = value
    assert problems_of(minimal_config) == [f"{section}.{key}: {problem}"]


def test_secret_values_are_not_shown(minimal_config):
    minimal_config["run_conf"]["model_args"] = {"token": 12345}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("run_conf.model_args.token: must be") and "12345" not in problem


def test_missing_or_empty_sections_and_tags(minimal_config):
    minimal_config["run_conf"] = None
    minimal_config["data_conf"]["training_data"].pop("type")
    minimal_config["data_conf"]["training_data"]["datasets"] = []
    assert set(problems_of(minimal_config)) == {
        "run_conf: must be a valid dictionary, got null",
        "data_conf.training_data.type: required key is missing",
    }
