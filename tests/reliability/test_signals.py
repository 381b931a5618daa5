"""SIGTERM / SIGINT during training: save a checkpoint at the next step boundary, exit 0 saying how to resume,
and resume bit-identically; a second signal aborts at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from finetuning.cli import main
from finetuning.tracking.report import LOSS_CURVE_FILE
from finetuning.train.checkpoints import incomplete_reason, step_checkpoints
from tests.conftest import REPO
from tests.reliability.conftest import assert_bit_identical, final_weights, resumable_config, run_with_faults


@pytest.mark.parametrize("name", ["TERM", "INT"])
@pytest.mark.slow
def test_signal_mid_accumulation_saves_at_the_step_boundary_and_resume_is_bit_identical(
    tmp_path, tiny_model_dir, uninterrupted, name
):
    config = resumable_config(tmp_path, tiny_model_dir)
    # micro-batch 7 is the first half of step 4 (2 per step): not a save step (save_steps 3)
    stopped = run_with_faults(config, f"micro:7:{name}")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    out = tmp_path / "out"
    assert f"Training stopped by SIG{name} at step 4 of 16." in stopped.stdout
    assert f"Checkpoint saved: {out / 'checkpoint-4'}" in stopped.stdout
    assert f"To resume, run the same command again: finetuning sft {config}" in stopped.stdout
    assert [path.name for path in step_checkpoints(out)] == ["checkpoint-3", "checkpoint-4"]
    assert incomplete_reason(out / "checkpoint-4") is None
    assert not (out / "checkpoint-final").exists()
    assert (out / LOSS_CURVE_FILE).is_file()  # the report of the run so far
    assert str(out / "checkpoint-4") in (out / "summary.md").read_text()

    assert main(["sft", str(config)]) == 0
    assert_bit_identical(final_weights(tmp_path), uninterrupted)


@pytest.mark.slow
def test_second_signal_aborts_at_once_without_saving(tmp_path, tiny_model_dir):
    config = resumable_config(tmp_path, tiny_model_dir)
    aborted = run_with_faults(config, "micro:5:TERM", "micro:6:TERM")  # both inside step 3, before it can save
    assert aborted.returncode == -signal.SIGTERM
    assert "SIGTERM again: aborting now, without saving" in aborted.stderr
    out = tmp_path / "out"
    assert step_checkpoints(out) == [] and not (out / "checkpoint-final").exists()


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_saving_disabled_still_checkpoints(tmp_path, tiny_model_dir):
    """As a scheduler or Ctrl-C does it: the signal comes from outside at an unknown moment, to the whole process
    group, DataLoader worker processes included; save_strategy is 'no' and resume is not configured, so the hint
    says what to set."""
    config = resumable_config(
        tmp_path,
        tiny_model_dir,
        training_args={"max_steps": 100_000, "save_strategy": "no", "dataloader_num_workers": 2},
        run_conf={"resume_from_checkpoint": False},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "finetuning.cli", "sft", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a job step has
    )
    metrics = tmp_path / "out" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert stderr.count("SIGTERM received") == 1  # said once, by the trainer, not by each data worker
    checkpoints = step_checkpoints(tmp_path / "out")
    assert len(checkpoints) == 1 and incomplete_reason(checkpoints[0]) is None
    step = json.loads((checkpoints[0] / "trainer_state.json").read_text())["global_step"]
    assert f"Training stopped by SIGTERM at step {step} of 100000." in stdout
    assert "To resume, set run_conf.resume_from_checkpoint: auto (or the checkpoint path) and run:" in stdout


@pytest.mark.slow
def test_ctrl_c_before_training_exits_130_without_a_traceback(tmp_path, tiny_model_dir):
    """Nothing to save yet (the model is loading): stop at once, say so, no traceback."""
    interrupted = run_with_faults(resumable_config(tmp_path, tiny_model_dir), "load:1:INT")
    assert interrupted.returncode == 130
    assert interrupted.stderr.rstrip().endswith("interrupted") and "Traceback" not in interrupted.stderr
    assert step_checkpoints(tmp_path / "out") == []
