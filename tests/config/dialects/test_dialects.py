"""The dialect framework: detection by tell-tale keys, `--dialect`, the one log line, errors relocated to the user's
keys, the translation context, and `convert` (VectorLM, the first dialect, as the example)."""

from __future__ import annotations

import copy
import logging

import pytest
import yaml

from finetuning.cli import main
from finetuning.config import ConfigError, load_any_config
from finetuning.config.dialects import detect
from tests.config.dialects.test_vectorlm import EXAMPLES, SHIPPED, write


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(SHIPPED)


def test_a_native_config_is_detected_as_native():
    assert detect({"data_conf": {}, "training_args": {}}) == "native"


def test_no_match_names_each_dialects_tell_tale_keys():
    with pytest.raises(ConfigError) as info:
        detect({"train_parameters": {}, "sft_args": {}})
    (problem,) = info.value.problems
    assert "no config dialect has these top-level keys (train_parameters, sft_args)" in problem
    assert "native: data_conf / training_args / batchsize_conf / run_conf" in problem
    assert "vectorlm: train_parameters together with dataset or dataset_preprocess" in problem
    assert "--dialect NAME" in problem


def test_several_matches_are_an_error(config):
    with pytest.raises(ConfigError) as info:
        detect({**config, "run_conf": {}})
    assert "fit several dialects (native, vectorlm)" in info.value.problems[0]


def test_dialect_option_overrides_detection(tmp_path, capsys):
    path = write(tmp_path, {**SHIPPED, "run_conf": {}})
    assert main(["convert", str(path)]) == 2
    assert "fit several dialects" in capsys.readouterr().err
    assert main(["--dialect", "vectorlm", "convert", str(path)]) == 2  # read as VectorLM: run_conf is not its key
    assert "run_conf: unknown key" in capsys.readouterr().err
    assert main(["--dialect", "native", "validate", str(write(tmp_path, SHIPPED))]) == 2
    assert "train_parameters: unknown key" in capsys.readouterr().err


def test_the_dialect_is_logged_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    load_any_config(write(tmp_path, SHIPPED))
    assert [r.getMessage() for r in caplog.records if "dialect" in r.getMessage()] == ["config dialect: vectorlm"]


def test_convert_a_native_config_prints_it_as_it_is(tmp_path, capsys):
    from tests.config.conftest import MINIMAL_CONFIG

    assert main(["convert", str(write(tmp_path, MINIMAL_CONFIG))]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == MINIMAL_CONFIG


def test_convert_of_a_vectorlm_config_loads_no_torch():
    """Translation imports nothing heavy: `convert` of a VectorLM config starts as fast as a native one (once the
    trainer field table is cached, as after any earlier command)."""
    from finetuning.config.trainer_fields import trainer_fields
    from tests.test_startup import probe

    trainer_fields("sft")
    result, stderr = probe("convert", str(EXAMPLES[0]))
    assert result == {"code": 0, "heavy": []}, stderr
    assert "config dialect: vectorlm" in stderr


def test_relocate_takes_the_longest_mapped_prefix():
    from finetuning.config.dialects import relocate

    paths = {
        "peft_conf.peft_kwargs": "train_parameters.lora_peft_config",
        "data_conf.training_data": "dataset.train_ds",
        "data_conf.training_data.datasets[0].path": "dataset.train_ds",
    }
    assert relocate(
        [
            "peft_conf.peft_kwargs.r: must be greater than or equal to 1, got 0",
            "data_conf.training_data.datasets[0].path: not found",
            "data_conf.training_data.type: must be CONCATENATION",
            "sft_args.max_seq_length: must be a valid integer",  # not from a source key: as it is
            "invalid: a sentence, not a path",
        ],
        paths,
    ) == [
        "train_parameters.lora_peft_config.r: must be greater than or equal to 1, got 0",
        "dataset.train_ds: not found",
        "dataset.train_ds.type: must be CONCATENATION",
        "sft_args.max_seq_length: must be a valid integer",
        "invalid: a sentence, not a path",
    ]


def test_environment_context_reads_world_size_and_visible_devices(monkeypatch):
    from finetuning.config.dialects import environment_context

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # devices hidden: no CUDA, whatever the machine has
    context = environment_context()
    assert (context.num_processes, context.cuda) == (4, False)
