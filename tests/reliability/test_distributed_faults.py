"""Faults of a 2-process run (torchrun, gloo DDP): kill -9 of one worker ends the whole job and `resume: auto`
restarts it from the last complete checkpoint; SIGTERM to the launcher (as a scheduler sends it) makes every rank
finish the same step and save its part of one complete checkpoint; the run resumed from there ends bit-identical to
a run never interrupted.

One chain of runs backs the tests (each launch costs ~20 s here): killed at step 5 → resumed, stopped by SIGTERM at
step 5 → resumed to the end. The uninterrupted reference trains on one process: tests/distributed/test_launch.py
proves that 2 processes train bit-identically to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetuning.cli import main
from finetuning.train.checkpoints import incomplete_reason, last_complete_checkpoint, step_checkpoints
from tests.conftest import REPO, sft_config, write_yaml
from tests.distributed.launch import launch_env, torchrun_module_command
from tests.reliability.conftest import assert_bit_identical

STEPS = 8


def distributed_config(directory: Path, model: Path) -> Path:
    """Full fine-tuning, 8 a step (1 process: 4 x 2 accumulation; 2 processes: 4 x 1), a checkpoint every 3 steps."""
    directory.mkdir(parents=True, exist_ok=True)
    config = sft_config(
        directory,
        model,
        batchsize_conf={"total_train_batch_size": 8, "max_per_device_train_batch_size": 4},
        training_args={
            "max_steps": STEPS,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 2,
            "save_strategy": "steps",
            "save_steps": 3,
            "save_total_limit": 2,
        },
        run_conf={"resume_from_checkpoint": "auto"},
    )
    return write_yaml(directory / "config.yaml", config)


def launch(config: Path, *faults: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m tests.reliability.faults FAULTS -- sft CONFIG` (no faults: `-m finetuning`)."""
    command = (
        torchrun_module_command("tests.reliability.faults", *faults, "--", "sft", str(config))
        if faults
        else torchrun_module_command("finetuning", "sft", str(config))
    )
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=launch_env(), timeout=600)


def final_model(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "out" / "checkpoint-final" / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir) -> dict[str, torch.Tensor]:
    directory = tmp_path_factory.mktemp("uninterrupted")
    assert main(["sft", str(distributed_config(directory, tiny_model_dir))]) == 0
    return final_model(directory)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    directory = tmp_path_factory.mktemp("faulted")
    distributed_config(directory, tiny_model_dir)
    return directory


@pytest.fixture(scope="module")
def killed(run_dir) -> subprocess.CompletedProcess:
    """Rank 1 SIGKILLed as its 5th micro-batch (step 5) starts, after checkpoint-3."""
    return launch(run_dir / "config.yaml", "micro:5:KILL@1")


@pytest.fixture(scope="module")
def stopped(run_dir, killed) -> subprocess.CompletedProcess:
    """Resumed from checkpoint-3; SIGTERM to the torchrun launcher during the 2nd micro-batch (step 5)."""
    return launch(run_dir / "config.yaml", "micro:2:TERM@launcher")


@pytest.fixture(scope="module")
def resumed(run_dir, stopped) -> subprocess.CompletedProcess:
    return launch(run_dir / "config.yaml")


@pytest.mark.slow
def test_kill_of_one_worker_ends_the_job_keeping_the_last_complete_checkpoint(run_dir, killed):
    assert killed.returncode != 0  # torchrun ends the job: rank 0 is stopped too
    assert "exitcode  : -9" in killed.stderr  # torchrun's report names the killed worker's SIGKILL
    out = run_dir / "out"
    assert [path.name for path in step_checkpoints(out)] == ["checkpoint-3"]
    assert last_complete_checkpoint(out).name == "checkpoint-3"
    assert not (out / "checkpoint-final").exists()


@pytest.mark.slow
def test_sigterm_to_the_launcher_saves_one_complete_checkpoint_on_every_rank(run_dir, stopped):
    """torchrun forwards the SIGTERM to both workers; they agree on the step, each writes its part, both exit 0.
    torchrun itself then re-raises the signal it got (SignalException, exit status 1): that is the launcher's
    doing, the engine's own stop is clean (no worker traceback, the CLI's stop message, exit 0 per worker)."""
    out = run_dir / "out"
    assert f"resuming from {out / 'checkpoint-3'}" in stopped.stderr
    assert stopped.returncode == 1 and "SignalException" in stopped.stderr, stopped.stderr[-3000:]
    assert "[rank0]: Traceback" not in stopped.stderr and "[rank1]: Traceback" not in stopped.stderr
    assert stopped.stderr.count("SIGTERM received") == 1  # rank 0 says it for both
    assert stopped.stdout.count(f"Training stopped by SIGTERM at step 5 of {STEPS}.") == 1
    checkpoint = out / "checkpoint-5"
    assert f"Checkpoint saved: {checkpoint}" in stopped.stdout
    assert incomplete_reason(checkpoint) is None
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 5
    assert not (out / "checkpoint-final").exists() and not (out / ".staging").exists()


@pytest.mark.slow
def test_the_run_resumed_after_both_faults_is_bit_identical(run_dir, resumed, uninterrupted):
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {run_dir / 'out' / 'checkpoint-5'}" in resumed.stderr
    assert_bit_identical(final_model(run_dir), uninterrupted)
    assert resumed.stdout.count("Training finished.") == 1
