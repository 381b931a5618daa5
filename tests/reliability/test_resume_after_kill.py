"""A run killed with SIGKILL anywhere (mid gradient accumulation, across an epoch boundary, in the middle of a
checkpoint save) and resumed with `resume_from_checkpoint: auto` ends bit-identical to a run never interrupted:
weights, optimizer, scheduler, RNG and data position are all restored. LoRA adapter with dropout, 2 accumulation
steps, cosine schedule with warmup."""

from __future__ import annotations

import signal

import pytest
from safetensors.torch import load_file

from finetuning.cli import main
from finetuning.train.checkpoints import last_complete_checkpoint, step_checkpoints
from tests.reliability.conftest import assert_bit_identical, final_weights, resumable_config, run_with_faults


@pytest.mark.parametrize(
    ("fault", "resumes_from"),
    [
        ("micro:1:KILL", None),  # the first micro-batch: no checkpoint yet, 'auto' starts afresh
        ("micro:7:KILL", "checkpoint-3"),  # first micro-batch after a checkpoint
        ("micro:16:KILL", "checkpoint-6"),  # the second micro-batch of an accumulation: gradients half summed
        ("micro:29:KILL", "checkpoint-12"),  # in the second epoch; resumes from the first
        ("save:3:KILL", "checkpoint-6"),  # inside the save of checkpoint-9: half written, never picked
    ],
)
@pytest.mark.slow
def test_sigkill_then_auto_resume_is_bit_identical(tmp_path, tiny_model_dir, uninterrupted, fault, resumes_from):
    config = resumable_config(tmp_path, tiny_model_dir)
    killed = run_with_faults(config, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "out"
    assert not (out / "checkpoint-final").exists()
    on_disk = step_checkpoints(out)  # complete or not: a half-written one must not be visible at all
    assert (on_disk[-1].name if on_disk else None) == resumes_from
    assert (last.name if (last := last_complete_checkpoint(out)) else None) == resumes_from
    if fault.startswith("save:"):
        assert (out / ".staging" / "checkpoint-9").is_dir()  # the kill did land mid-save

    assert main(["sft", str(config)]) == 0
    assert_bit_identical(final_weights(tmp_path), uninterrupted)
    assert not (out / ".staging").exists()
    assert len(step_checkpoints(out)) == 2  # save_total_limit, counting the resumed run's saves


@pytest.mark.slow
def test_full_fine_tuning_killed_mid_accumulation_resumes_bit_identical(tmp_path, tiny_model_dir):
    """The same without an adapter: every weight and the optimizer state of the whole model are restored."""
    no_peft = {"peft_type": "NO_PEFT"}
    straight, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed_dir.mkdir()
    assert main(["sft", str(resumable_config(straight, tiny_model_dir, peft_conf=no_peft))]) == 0
    config = resumable_config(killed_dir, tiny_model_dir, peft_conf=no_peft)
    assert run_with_faults(config, "micro:12:KILL").returncode == -signal.SIGKILL  # 2nd half of step 6, a save step
    assert last_complete_checkpoint(killed_dir / "out").name == "checkpoint-3"
    assert main(["sft", str(config)]) == 0
    reference = load_file(straight / "out" / "checkpoint-final" / "model.safetensors")
    assert_bit_identical(load_file(killed_dir / "out" / "checkpoint-final" / "model.safetensors"), reference)
