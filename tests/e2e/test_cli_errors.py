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
    ],
)
def test_user_errors_exit_2_before_training(tmp_path, tiny_model_dir, capsys, change, message):
    config = deep_update(sft_config(tmp_path, tiny_model_dir), change)
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_data_fails_with_file_and_line(tmp_path, tiny_model_dir, capsys):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data = write_jsonl(tmp_path / "d.jsonl", [good, good])
    with data.open("a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "q"}]\n')
    config = sft_config(tmp_path, tiny_model_dir, data=data)
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert f"{data}:3: invalid JSON" in capsys.readouterr().err


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
