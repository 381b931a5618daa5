"""DPO (LoRA policy, the reference is the policy with its adapter disabled) killed mid-accumulation and resumed
ends bit-identical to an uninterrupted run: the same checkpoint machinery serves every method."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from finetuning.cli import main
from finetuning.train.checkpoints import last_complete_checkpoint
from tests.conftest import REPO, write_yaml
from tests.e2e.test_dpo import dpo_config, sft_model  # noqa: F401 (sft_model is a fixture)
from tests.reliability.conftest import LORA, assert_bit_identical, final_weights


@pytest.mark.slow
def test_dpo_killed_mid_accumulation_resumes_bit_identical(tmp_path, sft_model):  # noqa: F811
    def config(directory):
        document = dpo_config(
            directory,
            sft_model,
            peft_conf=LORA,
            batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 4},
            training_args={"max_steps": 8, "save_strategy": "steps", "save_steps": 3, "lr_scheduler_type": "cosine"},
            run_conf={"resume_from_checkpoint": "auto"},
        )
        directory.mkdir()
        return write_yaml(directory / "dpo.yaml", document)

    straight, killed = config(tmp_path / "straight"), config(tmp_path / "killed")
    assert main(["dpo", str(straight)]) == 0
    faults = [sys.executable, "-m", "tests.reliability.faults", "micro:10:KILL", "--", "dpo", str(killed)]
    result = subprocess.run(faults, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert last_complete_checkpoint(tmp_path / "killed" / "out").name == "checkpoint-3"
    assert main(["dpo", str(killed)]) == 0
    assert_bit_identical(final_weights(tmp_path / "killed"), final_weights(tmp_path / "straight"))
