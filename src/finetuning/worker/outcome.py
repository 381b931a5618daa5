"""What a finished training process means for the job: its result, or the error the job fails with.

The process is `finetuning sft|dpo` itself, so its outcome is read the way a person at a terminal reads it: exit
code 2 and the `error:` block it printed (the same text the job returns), a stop or a kill with where the run can
resume from, or the final model's path — and then the numbers of the run from the files it left in its output
directory (metrics.jsonl, summary.md). A job that did not produce a final model is never reported as completed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import USER_ERROR_EXIT
from ..tracking.metrics_file import METRICS_FILE, metric_series, read_metrics
from ..tracking.report import SUMMARY_FILE
from ..train.checkpoints import last_complete_checkpoint
from .child import ChildOutcome
from .layout import RunLayout

# the lines cli.py prints for a finished run, and for one finished before (`RunAlreadyFinished`)
_FINAL_MODEL = re.compile(
    r"^(?:Training finished\. Final model|already finished \(.*\): nothing to do; final model): (.+)$"
)
_STOPPED = "Training stopped by "
_ERROR_HEAD = re.compile(r"^error:(?: \d+ problem\(s\) found:)?$")  # errors.user_error_text
RESUME_HINT = "submit the same job again (same user_id, model_id and run_id) to resume from it"


class JobFailed(Exception):
    """The job's error, already worded for the user (the text its result's `error` holds)."""


def final_model(outcome: ChildOutcome, layout: RunLayout, progress: dict[str, Any] | None = None) -> Path:
    """The final model's directory of a run that ended well; `JobFailed` saying what happened otherwise (`progress`:
    the last progress record, for how far a run that did not end got)."""
    if outcome.timed_out:
        raise JobFailed(
            f"the training process ran past the worker's time limit (FINETUNING_WORKER_JOB_TIMEOUT) and was stopped "
            f"after {outcome.seconds:.0f} s{_at_step(progress)}{_checkpoint_note(layout)}"
        )
    if outcome.killed_by is not None:
        raise JobFailed(
            f"the training process was killed by {outcome.killed_by}{_at_step(progress)} (an out-of-memory kill ends "
            f"a process like this){_checkpoint_note(layout)}; its log: {layout.log}"
        )
    if outcome.returncode == USER_ERROR_EXIT and (block := user_error_block(outcome.output)) is not None:
        raise JobFailed(block)
    if outcome.returncode != 0:
        last = next((line for line in reversed(outcome.output) if line.strip()), "no output")
        raise JobFailed(
            f"the training process failed (exit code {outcome.returncode}): {last.strip()}; its log: {layout.log}"
        )
    for line in reversed(outcome.output):
        if line.startswith(_STOPPED):
            raise JobFailed(f"{line.strip()}{_checkpoint_note(layout)}")
        if (found := _FINAL_MODEL.match(line.strip())) is not None:
            return Path(found.group(1))
    raise JobFailed(f"the training process ended without saving a final model; its log: {layout.log}")


def user_error_block(lines: list[str]) -> str | None:
    """The last `error:` block of the output (its head and the indented problem lines after it)."""
    starts = [index for index, line in enumerate(lines) if _ERROR_HEAD.match(line)]
    if not starts:
        return None
    block = [lines[starts[-1]]]
    for line in lines[starts[-1] + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def _at_step(progress: dict[str, Any] | None) -> str:
    if not progress or progress.get("step") is None:
        return ""
    return f" at step {progress['step']} of {progress.get('total_steps')}"


def _checkpoint_note(layout: RunLayout) -> str:
    checkpoint = last_complete_checkpoint(layout.output_dir) if layout.output_dir.is_dir() else None
    if checkpoint is None:
        return "; no checkpoint was saved: submitting the same job again starts the run afresh"
    return f"; last checkpoint: {checkpoint}; {RESUME_HINT}"


def completed_result(final_dir: Path, layout: RunLayout, wall_seconds: float) -> dict[str, Any]:
    """The result of a finished job: where its model is and how training went (from its metrics.jsonl: training
    losses, optimizer steps, tokens trained) and its summary.md."""
    metrics = layout.output_dir / METRICS_FILE
    records = read_metrics(metrics) if metrics.is_file() else []
    _, losses = metric_series(records, "loss")
    steps = [int(record["step"]) for record in records if isinstance(record.get("step"), int | float)]
    _, tokens = metric_series(records, "num_tokens")
    summary = layout.output_dir / SUMMARY_FILE
    return {
        "status": "completed",
        "output_dir": str(layout.output_dir),
        "final_model": str(final_dir),
        "final_loss": losses[-1] if losses else None,
        "best_loss": min(losses) if losses else None,
        "steps": max(steps, default=0),
        "tokens": int(tokens[-1]) if tokens else None,
        "wall_seconds": round(wall_seconds, 1),
        "summary": summary.read_text(encoding="utf-8") if summary.is_file() else None,
    }
