"""Progress records from a training process to the worker that started it, through a file.

The worker runs each job in a process of its own and sets FINETUNING_PROGRESS_FILE for it; the training recipe then
adds `ProgressFileCallback` (train/run.py), which appends one JSON line per training log step: step, total steps,
loss, learning rate and the estimated seconds left. The worker reads the new lines as they come (`ProgressReader`)
and posts each to the platform (`runpod.serverless.progress_update`). A file, not a pipe: it survives the process's
death, so the worker can still say how far a killed run got.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..trainer_callback import trainer_callback

PROGRESS_VARIABLE = "FINETUNING_PROGRESS_FILE"
FIELDS = ("step", "total_steps", "loss", "learning_rate", "eta_seconds")


def progress_callback_from_environment():
    """The callback writing to $FINETUNING_PROGRESS_FILE, or None when the variable is not set (every run not
    started by the worker)."""
    path = os.environ.get(PROGRESS_VARIABLE)
    return ProgressFileCallback(path) if path else None


def eta_seconds(step: int, total_steps: int, first_step: int, elapsed: float) -> float | None:
    """Seconds left at the pace of the steps this process ran (a resumed run's earlier steps took no time here);
    None before the first step."""
    done = step - first_step
    if done <= 0 or elapsed <= 0 or total_steps <= 0:
        return None
    return round(max(total_steps - step, 0) * elapsed / done, 1)


@trainer_callback
class ProgressFileCallback:
    """Append a progress record at every training log (main process only; evaluation logs are not progress)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.started = time.monotonic()
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.first_step = state.global_step  # a resumed run starts at its checkpoint's step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        elapsed = time.monotonic() - self.started
        record = {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "loss": _number(logs.get("loss")),
            "learning_rate": _number(logs.get("learning_rate")),
            "eta_seconds": eta_seconds(state.global_step, state.max_steps, self.first_step, elapsed),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def _number(value: Any) -> float | None:
    item = getattr(value, "item", None)  # a tensor or numpy scalar
    value = item() if callable(item) else value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ProgressReader:
    """The records appended to a progress file since the last `new_records()` call (a line still being written is
    left for the next call)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.last: dict[str, Any] | None = None

    def new_records(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = []
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append({key: record.get(key) for key in FIELDS})
        if records:
            self.last = records[-1]
        return records
