"""A training process's outcome as the job's result or error: the CLI's own error text, a kill or a stop with where
to resume, and the numbers of a finished run from the files it left. Never "completed" without a final model."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetuning.train.checkpoints import FinishedRun
from finetuning.worker.child import ChildOutcome
from finetuning.worker.layout import run_layout
from finetuning.worker.outcome import JobFailed, completed_result, final_model
from tests.conftest import write_jsonl

LOGS = ["12:00:00 INFO finetuning.config.loading: config dialect: worker", "  an indented log line"]


@pytest.fixture
def layout(tmp_path):
    return run_layout(tmp_path, "alice", "model", "run")


def failure(outcome: ChildOutcome, layout, progress=None) -> str:
    with pytest.raises(JobFailed) as info:
        final_model(outcome, layout, progress)
    return str(info.value)


def test_a_user_error_is_the_text_the_command_line_printed(layout):
    block = [
        "error: 2 problem(s) found:",
        "  input.args.lora_r: must be a whole number",
        "  input.args.foo: unknown key",
    ]
    assert failure(ChildOutcome(2, [*LOGS, "error:", "  an earlier one", *LOGS, *block]), layout) == "\n".join(block)


def test_a_killed_process_says_how_far_it_got_and_what_to_do(layout):
    text = failure(ChildOutcome(-9, LOGS), layout, {"step": 3, "total_steps": 10})
    assert text.startswith("the training process was killed by SIGKILL at step 3 of 10 (an out-of-memory kill")
    assert "no checkpoint was saved" in text and str(layout.log) in text


def test_a_crash_stop_or_time_out_is_an_error(layout):
    crash = failure(ChildOutcome(1, ["Traceback (most recent call last):", "RuntimeError: boom", ""]), layout)
    assert crash.startswith("the training process failed (exit code 1): RuntimeError: boom")
    stop = failure(
        ChildOutcome(0, [*LOGS, "Training stopped by SIGTERM at step 3 of 10.", "Checkpoint saved: x"]), layout
    )
    assert stop.startswith("Training stopped by SIGTERM at step 3 of 10.")
    assert "past the worker's time limit" in failure(ChildOutcome(-15, LOGS, timed_out=True, seconds=60), layout)
    assert "without saving a final model" in failure(ChildOutcome(0, LOGS), layout)


def test_the_final_model_is_read_from_what_the_command_line_printed(layout, tmp_path):
    finished = ChildOutcome(0, [*LOGS, f"Training finished. Final model: {tmp_path}/final"])
    assert final_model(finished, layout) == tmp_path / "final"
    before = ChildOutcome(0, [FinishedRun(tmp_path / "final", 5, 5).describe()])  # the same job submitted again
    assert final_model(before, layout) == tmp_path / "final"


def test_the_result_of_a_finished_run(layout):
    layout.output_dir.mkdir(parents=True)
    write_jsonl(
        layout.output_dir / "metrics.jsonl",
        [
            {"step": 1, "loss": 2.5, "num_tokens": 100.0},
            {"step": 2, "loss": 1.5, "num_tokens": 200.0},
            {"step": 3, "loss": 1.75, "num_tokens": 300.0},
            {"step": 3, "train_runtime": 4.0},
        ],
    )
    (layout.output_dir / "summary.md").write_text("# Run report\n")
    result = completed_result(Path("/x/final"), layout, 12.34)
    assert result == {
        "status": "completed",
        "output_dir": str(layout.output_dir),
        "final_model": "/x/final",
        "final_loss": 1.75,
        "best_loss": 1.5,
        "steps": 3,
        "tokens": 300,
        "wall_seconds": 12.3,
        "summary": "# Run report\n",
    }
