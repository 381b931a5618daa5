"""Which checkpoint to resume from, and the file-level rules that keep checkpoints whole: complete ones only,
rename into place, rotation that never deletes the one just written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuning.train.checkpoints import last_complete_checkpoint, publish, resolve_resume, rotate, step_checkpoints


def fake_checkpoint(path: Path, weights: str = "model.safetensors", state: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / weights).write_bytes(b"weights")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    return path


def test_resume_settings(tmp_path):
    assert resolve_resume(False, str(tmp_path)) == (None, [])
    assert resolve_resume("auto", str(tmp_path / "absent")) == (None, [])  # nothing yet: start fresh
    assert resolve_resume("auto", str(tmp_path)) == (None, [])
    fake_checkpoint(tmp_path / "checkpoint-5")
    fake_checkpoint(tmp_path / "checkpoint-10", weights="adapter_model.safetensors")
    fake_checkpoint(tmp_path / "checkpoint-final")  # not a step checkpoint
    assert resolve_resume("auto", str(tmp_path)) == (str(tmp_path / "checkpoint-10"), [])
    assert resolve_resume(True, str(tmp_path)) == (str(tmp_path / "checkpoint-10"), [])
    assert resolve_resume(str(tmp_path / "checkpoint-5"), str(tmp_path)) == (str(tmp_path / "checkpoint-5"), [])


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path, caplog):
    """Written by a tool that does not stage its saves and killed halfway: skipped by auto/true, refused by path."""
    fake_checkpoint(tmp_path / "checkpoint-4")
    fake_checkpoint(tmp_path / "checkpoint-8", state=False)
    (tmp_path / "checkpoint-12").mkdir()
    assert resolve_resume("auto", str(tmp_path)) == (str(tmp_path / "checkpoint-4"), [])
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-12: no trainer_state.json" in caplog.text
    assert resolve_resume(True, str(tmp_path)) == (str(tmp_path / "checkpoint-4"), [])
    # a path is taken as given; the resume checks refuse it (tests/train/test_preflight.py)
    assert resolve_resume(str(tmp_path / "checkpoint-8"), str(tmp_path)) == (str(tmp_path / "checkpoint-8"), [])


def test_resume_true_without_checkpoint_and_missing_path_are_user_errors(tmp_path, monkeypatch):
    checkpoint, [problem] = resolve_resume(True, str(tmp_path))
    assert checkpoint is None and "has no complete checkpoint; use 'auto'" in problem
    monkeypatch.chdir(tmp_path)
    # relative to the working directory, made absolute (check_resume_target reports it missing)
    assert resolve_resume("checkpoint-3", "out") == (f"{tmp_path}/checkpoint-3", [])


def test_publish_renames_into_place_and_replaces_a_previous_copy(tmp_path):
    final = fake_checkpoint(tmp_path / "checkpoint-3")
    staged = fake_checkpoint(tmp_path / ".staging" / "checkpoint-3", weights="adapter_model.safetensors")
    publish(staged, final)
    assert not staged.exists()
    assert sorted(p.name for p in final.iterdir()) == ["adapter_model.safetensors", "trainer_state.json"]
    assert not any(p.name.startswith(".trash") for p in tmp_path.iterdir())


def test_rotation_keeps_the_newest_and_never_the_one_just_written(tmp_path):
    for step in (2, 4, 6, 8):
        fake_checkpoint(tmp_path / f"checkpoint-{step}")
    rotate(tmp_path, 2, keep={tmp_path / "checkpoint-8"})
    assert [p.name for p in step_checkpoints(tmp_path)] == ["checkpoint-6", "checkpoint-8"]
    # a run resumed from an older checkpoint writes checkpoint-7: ordering by step alone would delete it
    fake_checkpoint(tmp_path / "checkpoint-7")
    rotate(tmp_path, 1, keep={tmp_path / "checkpoint-7"})
    assert [p.name for p in step_checkpoints(tmp_path)] == ["checkpoint-7"]
    rotate(tmp_path, None, keep=set())
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-7"


@pytest.mark.slow
def test_best_checkpoint_is_named_by_its_final_path_and_kept_by_rotation(tmp_path, tiny_model_dir):
    """The Trainer saves into `.staging/`, so the best checkpoint it records must be renamed with it."""
    from finetuning.cli import main
    from tests.conftest import sft_config, write_yaml

    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1, "seed": 1}},
        training_args={
            "max_steps": 6,
            "eval_strategy": "steps",
            "eval_steps": 2,
            "save_strategy": "steps",
            "save_steps": 2,
            "save_total_limit": 1,
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
        },
    )
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    out = tmp_path / "out"
    last = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    best = Path(last["best_model_checkpoint"])
    assert best.parent == out and best.is_dir()  # never a `.staging` path
    assert {p.name for p in step_checkpoints(out)} == {"checkpoint-6", best.name}
