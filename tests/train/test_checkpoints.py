"""`run_conf.resume_from_checkpoint`: false / true / 'auto' / a path."""

from __future__ import annotations

from finetuning.train.checkpoints import resolve_resume


def test_resume_settings(tmp_path):
    assert resolve_resume(False, str(tmp_path)) is None
    assert resolve_resume(True, str(tmp_path)) is True
    assert resolve_resume("auto", str(tmp_path / "absent")) is None  # nothing yet: start fresh
    assert resolve_resume("auto", str(tmp_path)) is None
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()  # not a step checkpoint
    assert resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_resume("/some/checkpoint-3", str(tmp_path)) == "/some/checkpoint-3"
