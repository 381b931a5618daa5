"""User errors exit with code 2 and a list of problems with dotted paths or file:line — never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from finetuning.cli import main
from tests.conftest import REPO, deep_update, sft_config, write_jsonl, write_yaml


def run_console(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "finetuning.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.slow
def test_bad_config_lists_every_problem_with_its_path(tmp_path, tiny_model_dir):
    config = sft_config(tmp_path, tiny_model_dir)
    config["data_conf"]["training_data"] = {
        "type": "PRECOMPUTE_WEIGHTED_MIX",
        "datasets": [{"path": "a.jsonl"}, {"path": "b.jsonl", "sampling_weight": -1}],
    }
    config["training_args"]["learning_rte"] = 0.1
    config["peft_conf"] = {"peft_type": "PRETRAINED_PEFT"}
    result = run_console("sft", str(write_yaml(tmp_path / "bad.yaml", config)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in (
        "data_conf.training_data.datasets[1].sampling_weight: must be greater than or equal to 0",
        "training_args.learning_rte: unknown key; did you mean 'learning_rate'?",
        "peft_conf.name_or_path: required key is missing",
    ):
        assert expected in result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batchsize_conf": {"total_train_batch_size": 0}}, "batchsize_conf.total_train_batch_size"),
        ({"run_conf": {"model": "./no/such/model"}}, "run_conf.model:"),
        ({"data_conf": {"training_data": {"datasets": [{"path": "missing.jsonl"}]}}}, "missing.jsonl: file not found"),
        ({"training_args": {"warmup_ratio": 0.1, "warmup_steps": 5}}, "training_args"),
        ({"quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bit": True}}, "quant"),
        ({"training_args": {"eval_strategy": "steps"}}, "training_args.eval_strategy: 'steps' needs validation data"),
        ({"run_conf": {"resume_from_checkpoint": True}}, "run_conf.resume_from_checkpoint: true, but"),
        ({"run_conf": {"final_checkpoint_name": "../../escape"}}, "run_conf.final_checkpoint_name"),
        ({"peft_conf": {"peft_type": "PRETRAINED_PEFT", "name_or_path": "./no/adapter"}}, "peft_conf.name_or_path:"),
        (
            {"peft_conf": {"peft_type": "LORA", "peft_kwargs": {"rr": 4}}},
            "peft_conf.peft_kwargs.rr: unknown key; did you mean 'r'?",
        ),
        (
            {"peft_conf": {"peft_type": "LORA", "peft_kwargs": {"target_modules": ["foo_proj"]}}},
            "peft_conf.peft_kwargs.target_modules: ['foo_proj'] matches no layer of the model",
        ),
        ({"run_conf": {"model_args": {"bogus_arg": 1}}}, "run_conf.model_args:"),
        ({"training_args": {"optim": "adamw_tourch"}}, "training_args.optim: unknown value 'adamw_tourch'"),
    ],
)
def test_user_errors_exit_2_before_training(tmp_path, tiny_model_dir, capsys, change, message):
    config = deep_update(sft_config(tmp_path, tiny_model_dir), change)
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not (tmp_path / "out" / "checkpoint-final").exists()


def test_bad_data_fails_with_file_and_line(tmp_path, tiny_model_dir, capsys):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data = write_jsonl(tmp_path / "d.jsonl", [good, good])
    with data.open("a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "q"}]\n')
    config = sft_config(tmp_path, tiny_model_dir, data=data)
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert f"{data}:3: invalid JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_too_long_examples_are_dropped_and_counted(tmp_path, tiny_model_dir, caplog):
    config = sft_config(tmp_path, tiny_model_dir, sft_args={"max_seq_length": 30}, training_args={"max_steps": 1})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    assert "training data: dropped" in caplog.text and "longer than sft_args.max_seq_length=30" in caplog.text


def test_schema_command_prints_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"data_conf", "training_args", "batchsize_conf", "peft_conf", "run_conf", "sft_args"} <= set(
        schema["properties"]
    )


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_config_reference_is_in_sync_with_the_schema(capsys, method):
    assert main(["schema", "--method", method, "--markdown"]) == 0
    reference = (REPO / "docs" / f"config-reference-{method}.md").read_text()
    assert capsys.readouterr().out.rstrip("\n") == reference.rstrip("\n"), "docs are stale: run `make docs`"


def test_unquoted_no_strategy_means_no(tmp_path, tiny_model_dir):
    path = tmp_path / "c.yaml"
    write_yaml(path, sft_config(tmp_path, tiny_model_dir, training_args={"max_steps": 1}))
    path.write_text(path.read_text().replace("save_strategy: 'no'", "save_strategy: no"))
    assert "save_strategy: no\n" in path.read_text()  # YAML 1.1 reads this as false
    assert main(["sft", str(path)]) == 0


def test_empty_model_directory_is_a_user_error(tmp_path, tiny_model_dir, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, empty)))]) == 2
    assert f"run_conf.model: {empty}: no config.json there (not a model directory)" in capsys.readouterr().err


def test_validate_checks_the_batch_arithmetic_for_this_launch(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = sft_config(tmp_path, tiny_model_dir, batchsize_conf={"total_train_batch_size": 5})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert "not divisible by the number of processes (2)" in capsys.readouterr().err


def test_mistral_template_preview_renders_markers_literally(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, data_conf={"chat_template_name": "mistral-with-system"})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config)), "--show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "start after '[/INST]'" in shown and "[/INST]«The capital of Tusello is Yorren.</s>»" in shown
