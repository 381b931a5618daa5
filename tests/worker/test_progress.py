"""Progress records: written by the training process's callback at each training log step, read by the worker as
they come (a half-written line waits for the next read)."""

from __future__ import annotations

import json

from transformers import TrainerControl, TrainerState, TrainingArguments

from finetuning.worker.progress import (
    ProgressFileCallback,
    ProgressReader,
    eta_seconds,
    progress_callback_from_environment,
)


def test_the_callback_exists_only_when_the_worker_asks_for_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FINETUNING_PROGRESS_FILE", raising=False)
    assert progress_callback_from_environment() is None
    monkeypatch.setenv("FINETUNING_PROGRESS_FILE", str(tmp_path / "p.jsonl"))
    assert progress_callback_from_environment().path == tmp_path / "p.jsonl"


def test_a_record_per_training_log_with_the_time_left(tmp_path):
    path = tmp_path / "progress.jsonl"
    callback = ProgressFileCallback(path)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state, control = TrainerState(global_step=4, max_steps=10), TrainerControl()
    callback.on_train_begin(args, state, control)  # a run resumed at step 4
    state.global_step = 6
    callback.started -= 4.0  # two steps took 4 s: 4 more steps, about 8 s
    callback.on_log(args, state, control, logs={"loss": 1.25, "learning_rate": 2e-4, "grad_norm": 0.5})
    callback.on_log(args, state, control, logs={"eval_loss": 1.5})  # an evaluation is not progress
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["step"] == 6 and record["total_steps"] == 10
    assert record["loss"] == 1.25 and record["learning_rate"] == 2e-4
    assert 7.5 <= record["eta_seconds"] <= 8.5


def test_eta_needs_a_step_done_here():
    assert eta_seconds(step=4, total_steps=10, first_step=4, elapsed=3.0) is None
    assert eta_seconds(step=5, total_steps=10, first_step=0, elapsed=10.0) == 10.0


def test_the_reader_returns_each_complete_record_once(tmp_path):
    path = tmp_path / "progress.jsonl"
    reader = ProgressReader(path)
    assert reader.new_records() == []  # not written yet
    path.write_text('{"step": 1, "total_steps": 3, "loss": 2.0}\n{"step": 2, "tot')
    assert [record["step"] for record in reader.new_records()] == [1]
    with path.open("a") as file:
        file.write('al_steps": 3, "loss": 1.5, "learning_rate": 0.1, "eta_seconds": 1.0}\n')
    (record,) = reader.new_records()
    assert record == {"step": 2, "total_steps": 3, "loss": 1.5, "learning_rate": 0.1, "eta_seconds": 1.0}
    assert reader.new_records() == [] and reader.last == record
