"""Dotted command-line overrides (config/dotted.py): applied to the config as written, in each dialect, checked
against the dialect's keys, recorded in the resolved config, and named in the errors they cause."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import yaml

from finetuning.config.dotted import Overrides, apply_overrides, parse_arguments
from finetuning.config.loading import ConfigError, dump_resolved_config, load_config_file
from finetuning.errors import UserError

REPO = Path(__file__).resolve().parents[2]
AXOLOTL = REPO / "examples" / "axolotl" / "llama-3-lora-1b.yml"
VECTORLM = REPO / "examples" / "vectorlm-lora.yaml"


def load(path: Path, *arguments: str, options: tuple[str, ...] = ()):
    return load_config_file(path, overrides=parse_arguments(arguments, options))


def write(tmp_path: Path, document: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def native(tmp_path, minimal_config) -> Path:
    return write(tmp_path, minimal_config)


# --- parsing -----------------------------------------------------------------------------------------------------


def test_values_are_read_as_yaml_scalars_in_both_forms():
    parsed = parse_arguments(
        ["--a.lr", "1e-4", "--a.on=true", "--a.names", "[x, y]", "--a.none=null", "--a.name", "llama", "--a.n=-3"]
    )
    values = {item.flag: item.value for item in parsed.items}
    assert values == {"a.lr": 1e-4, "a.on": True, "a.names": ["x", "y"], "a.none": None, "a.name": "llama", "a.n": -3}
    assert parsed.records()[0] == "a.lr=1e-4"  # as typed


def test_malformed_arguments_are_user_errors_showing_the_form():
    with pytest.raises(UserError) as caught:
        parse_arguments(["stray", "--a.b", "--c..d", "1", "--e", "[x,"])
    problems = caught.value.problems
    assert problems[0].startswith("stray: unexpected argument; a config override is --section.key VALUE")
    assert "--a.b: needs a value" in problems[1]
    assert "--c..d: an empty key" in problems[2]
    assert "--e: the value '[x,' is not valid YAML" in problems[3]


def test_a_secret_value_is_masked_in_the_record():
    parsed = parse_arguments(["--input.credentials.hf_token", "hf_abc"])
    assert parsed.records() == ["input.credentials.hf_token=***"]


# --- each dialect ------------------------------------------------------------------------------------------------


def test_native_overrides_set_training_args_sections_and_list_items(native):
    cfg = load(
        native,
        "--training_args.learning_rate",
        "1e-4",
        "--data_conf.training_data.datasets.0.path",
        "other.jsonl",
        "--run_conf.model=some/model",
        "--sft_args.max_seq_length",
        "64",
    ).config
    assert cfg.training_args["learning_rate"] == 1e-4
    assert cfg.data_conf.training_data.datasets[0].path == "other.jsonl"
    assert cfg.run_conf.model == "some/model"
    assert cfg.sft_args.max_seq_length == 64


def test_an_index_one_past_the_end_adds_a_list_item_and_further_is_an_error(native):
    cfg = load(native, "--data_conf.training_data.datasets.1.path", "b.jsonl").config
    assert [d.path for d in cfg.data_conf.training_data.datasets] == ["train.jsonl", "b.jsonl"]
    with pytest.raises(ConfigError) as caught:
        load(native, "--data_conf.training_data.datasets.5.path", "b.jsonl")
    assert caught.value.problems == [
        "--data_conf.training_data.datasets.5.path: data_conf.training_data.datasets is a list of 1 item(s); "
        "use an index 0 to 1"
    ]


def test_axolotl_overrides_are_top_level_keys_and_dataset_items():
    loaded = load(AXOLOTL, "--learning_rate", "1e-4", "--datasets.0.path", "x.jsonl", "--lora_r=8")
    native = loaded.translation.native
    assert loaded.dialect == "axolotl"
    assert native["training_args"]["learning_rate"] == 1e-4
    assert native["peft_conf"]["peft_kwargs"]["r"] == 8
    assert native["data_conf"]["training_data"]["datasets"][0]["path"] == "x.jsonl"


def test_vectorlm_overrides_reach_nested_sections_and_free_form_mappings():
    loaded = load(VECTORLM, "--train_parameters.optimizer.lr", "1e-4", "--train_parameters.lora_peft_config.r", "4")
    native = loaded.translation.native
    assert native["training_args"]["learning_rate"] == 1e-4
    assert native["peft_conf"]["peft_kwargs"]["r"] == 4


def test_worker_job_overrides_go_through_the_axolotl_keys_of_its_args(tmp_path):
    args = yaml.safe_load(AXOLOTL.read_text())
    job = write(tmp_path, {"input": {"user_id": "u1", "model_id": "m1", "run_id": "r1", "args": args}}, "job.yaml")
    loaded = load(job, "--input.args.lora_r", "8")
    assert loaded.dialect == "worker"
    assert loaded.translation.native["peft_conf"]["peft_kwargs"]["r"] == 8
    with pytest.raises(ConfigError) as caught:
        load(job, "--input.args.lora_rr", "8")
    assert caught.value.problems == [
        "--input.args.lora_rr: unknown key of input.args in the worker dialect; did you mean --input.args.lora_r?"
    ]


def test_sectioned_overrides_set_the_sections_keys(tmp_path, minimal_config):
    document = {
        "model": {"base_model": "some/model"},
        "fine_tuning": {"method": "full"},
        "training": {"learning_rate": 0.001, "epochs": 1},
        "dataset": {"format": "custom", "train_path": "train.jsonl"},
    }
    path = write(tmp_path, document)
    loaded = load(path, "--training.learning_rate", "1e-4", "--model.base_model", "other/model")
    assert loaded.dialect == "sectioned"
    assert loaded.config.training_args["learning_rate"] == 1e-4
    assert loaded.config.run_conf.model == "other/model"
    with pytest.raises(ConfigError) as caught:
        load(path, "--training.learnig_rate", "1e-4")
    assert "did you mean --training.learning_rate?" in caught.value.problems[0]


# --- unknown paths -----------------------------------------------------------------------------------------------


def test_an_unknown_path_is_an_error_with_a_did_you_mean_in_the_dialect(native):
    with pytest.raises(ConfigError) as caught:
        load(native, "--training_args.learning_rat", "1e-4", "--batchsize_conf.total_train_batch", "4")
    assert caught.value.problems == [
        "--training_args.learning_rat: unknown key of training_args in the native dialect; "
        "did you mean --training_args.learning_rate?",
        "--batchsize_conf.total_train_batch: unknown key of batchsize_conf in the native dialect; "
        "did you mean --batchsize_conf.total_train_batch_size?",
    ]
    with pytest.raises(ConfigError) as caught:
        load(AXOLOTL, "--learnig_rate", "1e-4")
    assert caught.value.problems == [
        "--learnig_rate: not a top-level key of the axolotl dialect; did you mean --learning_rate?"
    ]


def test_a_known_key_the_config_lacks_is_added(native):
    cfg = load(native, "--training_args.warmup_steps", "3", "--sft_args.max_seq_length", "64").config
    assert cfg.training_args["warmup_steps"] == 3


def test_a_mistyped_option_of_the_command_is_named(native):
    with pytest.raises(ConfigError) as caught:
        load(native, "--shwo", "3", options=("--help", "--show"))
    assert caught.value.problems == [
        "--shwo: neither an option of the command nor a top-level key of the native dialect; did you mean --show?"
    ]


def test_a_key_under_a_value_is_an_error(tmp_path, minimal_config):
    minimal_config["run_conf"] = {"model": "a/b"}
    with pytest.raises(UserError) as caught:
        apply_overrides(minimal_config, "native", parse_arguments(["--run_conf.model.name", "x"]), "sft")
    assert "run_conf.model" in caught.value.problems[0]


def test_the_config_as_written_is_not_changed(minimal_config):
    before = copy.deepcopy(minimal_config)
    changed = apply_overrides(minimal_config, "native", parse_arguments(["--training_args.seed", "3"]), "sft")
    assert minimal_config == before and changed["training_args"]["seed"] == 3


# --- errors, records, logging ------------------------------------------------------------------------------------


def test_a_validation_error_caused_by_an_override_names_the_users_key_and_the_flag(native):
    with pytest.raises(ConfigError) as caught:
        load(VECTORLM, "--train_parameters.optimizer.lr", "fast")
    assert any(
        p.startswith("train_parameters.optimizer.lr: ") and p.endswith("(set by --train_parameters.optimizer.lr)")
        for p in caught.value.problems
    ), caught.value.problems
    with pytest.raises(ConfigError) as caught:
        load(native, "--batchsize_conf.total_train_batch_size", "zero")
    assert any(
        p.startswith("batchsize_conf.total_train_batch_size: ") and "(set by --batchsize_conf" in p
        for p in caught.value.problems
    )


def test_overrides_are_recorded_in_the_resolved_config_and_logged_once(native, caplog):
    with caplog.at_level(logging.INFO, logger="finetuning"):
        cfg = load(native, "--training_args.learning_rate", "1e-4").config
    assert dump_resolved_config(cfg)["_provenance"] == {"overrides": ["training_args.learning_rate=1e-4"]}
    logged = [r.getMessage() for r in caplog.records if "config overrides" in r.getMessage()]
    assert logged == ["config overrides: training_args.learning_rate=1e-4"]
    assert "_provenance" not in dump_resolved_config(load_config_file(native).config)


def test_no_overrides_is_the_plain_load(native):
    assert load_config_file(native, overrides=Overrides()).config == load_config_file(native).config
