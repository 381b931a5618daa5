"""Running a config again where it already ran: a finished run is left as it is, a fresh start never silently
replaces an earlier run's outputs, and `training_args.overwrite_output_dir: true` replaces them on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuning.cli import main
from tests.conftest import sft_config, write_yaml


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` with its bytes and modification time."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def config(tmp_path: Path, model_dir: Path, resume, save_strategy: str = "steps", **training_args) -> Path:
    document = sft_config(
        tmp_path,
        model_dir,
        run_conf={"resume_from_checkpoint": resume},
        training_args={"max_steps": 4, "save_strategy": save_strategy, "save_steps": 2, **training_args},
    )
    return write_yaml(tmp_path / "c.yaml", document)


@pytest.mark.parametrize("save_strategy", ["steps", "no"])
@pytest.mark.slow
def test_rerunning_a_finished_run_does_nothing(tmp_path, tiny_model_dir, capsys, save_strategy):
    path = config(tmp_path, tiny_model_dir, "auto", save_strategy)
    assert main(["sft", str(path)]) == 0
    before = snapshot(tmp_path / "out")
    capsys.readouterr()
    assert main(["sft", str(path)]) == 0
    out = capsys.readouterr().out
    assert "already finished (step 4 of 4): nothing to do" in out
    assert snapshot(tmp_path / "out") == before  # no metrics line appended, no report or final model rewritten
    assert main(["validate", str(path)]) == 0
    assert "already finished (step 4 of 4)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_longer_run_of_a_finished_config_continues_it(tmp_path, tiny_model_dir, capsys):
    assert main(["sft", str(config(tmp_path, tiny_model_dir, "auto"))]) == 0
    assert main(["sft", str(config(tmp_path, tiny_model_dir, "auto", max_steps=6))]) == 0
    assert "already finished" not in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "checkpoint-final" / "finetuning_resume.json").read_text())
    assert (record["global_step"], record["max_steps"]) == (6, 6)


def test_a_fresh_start_refuses_to_replace_an_earlier_run(tmp_path, tiny_model_dir, capsys):
    path = config(tmp_path, tiny_model_dir, False)
    assert main(["sft", str(path)]) == 0
    before = snapshot(tmp_path / "out")
    capsys.readouterr()
    for command in ("sft", "validate"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert f"training_args.output_dir: {tmp_path / 'out'} holds the outputs of an earlier run" in err
        assert "checkpoint-2, checkpoint-4, checkpoint-final" in err
        assert "resume_from_checkpoint: auto" in err and "overwrite_output_dir: true" in err
    assert snapshot(tmp_path / "out") == before


@pytest.mark.slow
def test_overwrite_output_dir_replaces_the_earlier_run(tmp_path, tiny_model_dir):
    assert main(["sft", str(config(tmp_path, tiny_model_dir, False, save_steps=1))]) == 0
    assert (tmp_path / "out" / "checkpoint-1").is_dir()
    assert main(["sft", str(config(tmp_path, tiny_model_dir, False, overwrite_output_dir=True))]) == 0
    out = tmp_path / "out"
    # the earlier run's checkpoints are gone (auto could otherwise pick one as this run's newest)
    assert sorted(path.name for path in out.glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-final",
    ]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(1) == 1  # one run's metrics, not two runs' mixed
