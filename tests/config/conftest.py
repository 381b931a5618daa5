"""Shared fixtures: a full valid config in the shape of the Silogen schema (seed 000) and a YAML writer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

FULL_CONFIG: dict[str, Any] = {
    "data_conf": {
        "training_data": {
            "type": "PRECOMPUTE_WEIGHTED_MIX",
            "datasets": [
                {"path": "/local_resources/data/a.jsonl", "sampling_weight": 4.5},
                {"path": "/local_resources/data/b.jsonl"},
            ],
        },
        "validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1},
        "chat_template_name": "chat-ml",
        "missing_pad_token_strategy": "bos-repurpose",
    },
    "training_args": {
        "learning_rate": 0.00005,
        "max_grad_norm": 1.0,
        "num_train_epochs": 2,
        "logging_steps": 5,
        "save_strategy": "epoch",
        "eval_strategy": "steps",
        "eval_steps": 10,
        "lr_scheduler_type": "cosine",
        "optim": "adamw_torch",
        "bf16": False,
        "gradient_checkpointing": True,
        "report_to": ["none"],
        "seed": 42,
    },
    "batchsize_conf": {"total_train_batch_size": 64, "max_per_device_train_batch_size": 4},
    "peft_conf": {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "peft_kwargs": {"r": 16, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    },
    "run_conf": {
        "model": "/local_resources/basemodel",
        "model_args": {"attn_implementation": "sdpa", "torch_dtype": "bfloat16", "token": "hf_secret_value"},
        "resume_from_checkpoint": "auto",
    },
    "tracking": {"mlflow_server_uri": "", "experiment_name": "tests", "hf_mlflow_log_artifacts": False},
    "quant_conf": {"quantization_type": "bits-and-bytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
    "sft_args": {"max_seq_length": 1024, "train_on_completions_only": True},
}

MINIMAL_CONFIG: dict[str, Any] = {
    "data_conf": {
        "training_data": {"type": "CONCATENATION", "datasets": [{"path": "train.jsonl"}]},
        "validation_data": {"type": "NONE"},
    },
    "training_args": {},
    "batchsize_conf": {"total_train_batch_size": 8, "max_per_device_train_batch_size": 4},
    "peft_conf": {"peft_type": "NO_PEFT"},
    "run_conf": {},
    "sft_args": {},
}


@pytest.fixture
def full_config() -> dict[str, Any]:
    return copy.deepcopy(FULL_CONFIG)


@pytest.fixture
def minimal_config() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL_CONFIG)


@pytest.fixture
def write_yaml(tmp_path: Path):
    def write(data: Any, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True)
def _no_path_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHECKPOINTS_PATH", raising=False)
    monkeypatch.delenv("LOGS_PATH", raising=False)
