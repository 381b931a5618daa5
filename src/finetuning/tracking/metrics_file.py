"""`metrics.jsonl`: every `Trainer.log` call as one JSON line, written while training (the raw record of the run
report in tracking/report.py), and the readers the report and tests use."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..trainer_callback import trainer_callback

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def _jsonable(value: Any) -> Any:
    """`json.dumps` fallback: tensors and numpy scalars become numbers, anything else its text (never a crash)."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


@trainer_callback  # a TrainerCallback once made, without importing transformers with this module
class MetricsFileCallback:
    """Append every `Trainer.log` call to a JSONL file, one line each, as it happens.

    The file is opened per line (so each line is on disk before training goes on: an interrupted run keeps what it
    logged) in append mode: a resumed run adds to it, while a run starting at step 0 replaces the file of an
    earlier run in the same output_dir instead of mixing two runs' curves. Only the main process writes.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.start_epoch = 0.0  # epochs already done when this `train()` call began (resume), for tokens/s

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_epoch = state.epoch or 0.0
        if state.global_step == 0 and state.is_world_process_zero:
            self.path.unlink(missing_ok=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record, default=_jsonable) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line cut short by a crash is skipped, not fatal."""
    records, broken = [], 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        if isinstance(record, dict):
            records.append(record)
    if broken:
        logger.warning("%s: skipped %d unreadable line(s)", path, broken)
    return records


def metric_series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, sorted by step. A step logged twice keeps its latest value: a resumed run
    re-logs the steps between its checkpoint and the interruption, and the re-run is what the model became."""
    by_step: dict[int, float] = {}
    for record in records:
        value, step = record.get(key), record.get("step")
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(step, int | float):
            by_step[int(step)] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps]
