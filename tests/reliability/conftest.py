"""Shared by the reliability tests: a resumable LoRA config with gradient accumulation, a runner that injects
faults into a real training process, and the weights of the same run never interrupted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetuning.cli import main
from tests.conftest import REPO, sft_config, write_yaml

# dropout makes the RNG state part of what resume must restore
LORA = {
    "peft_type": "LORA",
    "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.1},
}
MAX_STEPS = 16  # facts.jsonl: 100 rows, 4 per micro-batch → 25 micro-batches = 13 steps per epoch, so we cross one


def resumable_config(tmp_path: Path, model_dir: Path, peft_conf: dict = LORA, **changes) -> Path:
    config = sft_config(
        tmp_path,
        model_dir,
        peft_conf=peft_conf,
        batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 4},  # 2 accumulation steps
        training_args={
            "max_steps": MAX_STEPS,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 3,
            "save_strategy": "steps",
            "save_steps": 3,
            "save_total_limit": 2,
            "weight_decay": 0.01,
        },
        run_conf={"resume_from_checkpoint": "auto"},
    )
    for section, values in changes.items():
        config[section].update(values)
    return write_yaml(tmp_path / "config.yaml", config)


def run_with_faults(config: Path, *faults: str) -> subprocess.CompletedProcess:
    """`finetuning sft CONFIG` in its own process, with faults from tests/reliability/faults.py."""
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.faults", *faults, "--", "sft", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def final_weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    return load_file(tmp_path / "out" / "checkpoint-final" / "adapter_model.safetensors")


def assert_bit_identical(resumed: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, tiny_model_dir) -> dict[str, torch.Tensor]:
    """Final adapter weights of `resumable_config` trained in one go."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    assert main(["sft", str(resumable_config(tmp_path, tiny_model_dir))]) == 0
    return final_weights(tmp_path)
