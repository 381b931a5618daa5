"""Further SFT set-ups end to end: another PEFT type, separate validation data, and two processes (DDP on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FACTS, sft_config, write_jsonl, write_yaml
from tests.e2e.test_sft_cli import run_cli


@pytest.mark.slow
def test_generic_peft_type_ia3_trains_only_its_vectors(tmp_path, tiny_model_dir):
    ia3 = {
        "peft_type": "IA3",
        "peft_kwargs": {"target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
    }
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        peft_conf=ia3,
        data_conf={"chat_template_name": "keep-original"},
        training_args={"max_steps": 3},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "c.yaml", config))) == 0
    final = tmp_path / "out" / "checkpoint-final"
    assert json.loads((final / "adapter_config.json").read_text())["peft_type"] == "IA3"
    weights = load_file(final / "adapter_model.safetensors")
    assert weights and all("ia3_l" in name for name in weights)
    assert any(not torch.equal(t, torch.ones_like(t)) for t in weights.values())  # moved away from the identity init
    assert not (tmp_path / "out" / "checkpoint-new-basemodel").exists()  # keep-original added no tokens


@pytest.mark.slow
def test_concatenated_validation_data_is_evaluated(tmp_path, tiny_model_dir, capsys):
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()[:10]]
    validation = write_jsonl(tmp_path / "validation.jsonl", rows)
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"validation_data": {"type": "CONCATENATION", "datasets": [{"path": str(validation)}]}},
        training_args={"max_steps": 4, "eval_strategy": "steps", "eval_steps": 2},
        batchsize_conf={"per_device_eval_batch_size": 5},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "c.yaml", config))) == 0
    summary = capsys.readouterr().out
    assert "(+10 validation)" in summary and "validation loss" in summary


@pytest.mark.slow
def test_two_processes_split_the_total_batch(tmp_path, tiny_model_dir):
    """torchrun with 2 CPU processes and no `use_cpu` in the config: really distributed (gloo DDP), 8 = 2 processes
    x 2 per device x 2 accumulation; the staged checkpoint holds both processes' RNG states before it is renamed
    into place; the main process alone logs and speaks; the best checkpoint is found by every process."""
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1, "seed": 1}},
        batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 2},
        training_args={
            "max_steps": 4,
            "save_strategy": "steps",
            "save_steps": 2,
            "eval_strategy": "steps",
            "eval_steps": 2,
            "load_best_model_at_end": True,
        },
    )
    path = write_yaml(tmp_path / "c.yaml", config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "finetuning.cli",
            "sft",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("batch: 2 process(es) x 2 per device x 2 accumulation = 8") == 1
    assert result.stderr.count("final model saved") == 1
    assert "parallel_mode" not in result.stderr and "Could not locate the best model" not in result.stderr
    assert result.stdout.count("Training finished.") == 1  # rank 0 speaks for both
    args = torch.load(tmp_path / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert (args.world_size, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 2, 2)
    assert args.parallel_mode.name == "DISTRIBUTED"
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert not (tmp_path / "out" / ".staging").exists()


@pytest.mark.slow
def test_secrets_never_reach_a_file_the_run_writes(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "preset-by-the-test")  # restored afterwards; the engine only sets it when unset
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        training_args={"max_steps": 2, "hub_token": "hf_SECRET_A", "save_strategy": "steps", "save_steps": 1},
        run_conf={"model_args": {"token": "hf_SECRET_B"}},
        tracking={"mlflow_server_uri": "https://user:SECRET_C@mlflow.example", "experiment_name": "e"},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "c.yaml", config))) == 0
    written = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert len(written) > 10
    for path in written:
        assert b"SECRET" not in path.read_bytes(), path
    resolved = (tmp_path / "out" / "checkpoint-final" / "finetuning_config.yaml").read_text()
    assert "https://***@mlflow.example" in resolved
