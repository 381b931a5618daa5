"""`run_conf.resume_from_checkpoint`: false / true / 'auto' / a path — decided before any model loads."""

from __future__ import annotations

import pytest

from finetuning.errors import UserError
from finetuning.train.checkpoints import resolve_resume


def test_resume_settings(tmp_path):
    assert resolve_resume(False, str(tmp_path)) is None
    assert resolve_resume("auto", str(tmp_path / "absent")) is None  # nothing yet: start fresh
    assert resolve_resume("auto", str(tmp_path)) is None
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()  # not a step checkpoint
    assert resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(True, str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-5"), str(tmp_path)) == str(tmp_path / "checkpoint-5")


def test_resume_true_without_checkpoint_and_missing_path_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="has no checkpoint; use 'auto'"):
        resolve_resume(True, str(tmp_path))
    with pytest.raises(UserError, match="no such checkpoint directory"):
        resolve_resume(str(tmp_path / "checkpoint-3"), str(tmp_path))
