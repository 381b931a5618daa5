"""Start-up: the commands that train nothing load no torch (`--help`, `schema`, argument and config errors, config
validation, a repeated `validate`), and the on-disk caches that make that possible are honest: keyed by their
inputs, rebuilt when corrupt, re-checked when an input changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetuning.checks_cache import cache_dir, cached_outcome, entry_path
from finetuning.config.trainer_fields import TRAINER_CLASSES, FieldTable, trainer_fields

from .conftest import FACTS, REPO, sft_config, write_jsonl, write_yaml

HEAVY = ("torch", "transformers", "peft", "bitsandbytes")
# Runs the CLI in a fresh interpreter, then prints (last line) the heavy modules it left in sys.modules.
PROBE = """
import json, sys
import finetuning.cli as cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def probe(*args: str, cwd: Path = REPO) -> tuple[dict, str]:
    """(exit code and heavy modules, stderr) of `finetuning ARGS` in a fresh process (same FINETUNING_CACHE)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def cached_tables():
    """The trainer field tables on disk, as after any earlier command (the first one builds them, importing torch;
    this session's FINETUNING_CACHE is shared with the subprocesses)."""
    for method in TRAINER_CLASSES:
        trainer_fields(method)


def _fresh(method: str) -> FieldTable:
    import importlib

    module, name = TRAINER_CLASSES[method].split(":")
    return FieldTable.from_dataclass(getattr(importlib.import_module(module), name))


def test_importing_the_cli_loads_no_torch():
    code = f"import sys, finetuning.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_and_argument_errors_load_no_torch():
    result, stderr = probe("--help")
    assert result == {"code": 0, "heavy": []}
    result, stderr = probe("sft")  # the config argument is missing: argparse's error, exit 2
    assert result == {"code": 2, "heavy": []}
    assert "the following arguments are required: config" in stderr
    result, stderr = probe("sft", "no/such/config.yaml")  # a user error: `error:`, exit 2, no traceback
    assert result == {"code": 2, "heavy": []}
    assert stderr.startswith("error:") and "Traceback" not in stderr
    assert "gemm_4bit" not in stderr  # bitsandbytes' CPU-kernel line comes only with bitsandbytes


@pytest.mark.usefixtures("cached_tables")
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_schema_loads_no_torch_once_the_table_is_cached(method):
    result, _ = probe("schema", "--method", method)
    assert result == {"code": 0, "heavy": []}


@pytest.mark.usefixtures("cached_tables")
def test_config_validation_loads_no_torch():
    code = (
        "import sys; from finetuning.config import load_any_config; "
        "cfg = load_any_config('examples/demo-facts-sft.yaml'); "
        f"print(cfg.training_args['warmup_steps'], [m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0.05 []"  # warmup_ratio translated: the legacy table ran, from the cached fields


@pytest.mark.parametrize("method", sorted(TRAINER_CLASSES))
def test_cached_table_is_the_installed_class(cached_tables, method):
    assert trainer_fields(method).to_json() == _fresh(method).to_json()


def test_a_corrupt_cache_entry_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNING_CACHE", str(tmp_path / "cache"))
    calls = []

    def compute():
        calls.append(1)
        return ["a problem"]

    assert cached_outcome("demo", {"x": 1}, compute) == ["a problem"]
    assert cached_outcome("demo", {"x": 1}, compute) == ["a problem"]
    assert len(calls) == 1  # the second answer came from disk
    entry = entry_path("demo", {"x": 1})
    assert entry.parent.parent == cache_dir() == tmp_path / "cache"
    entry.write_text('{"outcome": ["trunc', encoding="utf-8")  # e.g. a crash mid-write by an older version
    assert cached_outcome("demo", {"x": 1}, compute) == ["a problem"]
    assert len(calls) == 2
    assert json.loads(entry.read_text(encoding="utf-8"))["outcome"] == ["a problem"]
    assert cached_outcome("demo", {"x": 2}, compute) == ["a problem"] and len(calls) == 3  # other inputs: computed
    assert sorted(p.name for p in entry.parent.iterdir() if p.name.startswith(".tmp")) == []  # no temporary left


def test_callbacks_are_trainer_callbacks_when_made():
    from transformers import TrainerCallback

    from finetuning.tracking.report import MetricsFileCallback
    from finetuning.train.interrupt import GracefulStop

    for callback in (MetricsFileCallback("metrics.jsonl"), GracefulStop()):
        assert isinstance(callback, TrainerCallback)
        assert callback.on_epoch_begin(None, None, None) is None  # TrainerCallback's no-op handlers


def _validate(config: Path, cwd: Path) -> dict:
    result, stderr = probe("validate", str(config), cwd=cwd)
    assert result["code"] == 0, stderr
    return result


def _entries(kind: str) -> int:
    folder = cache_dir() / kind
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


@pytest.mark.slow
def test_second_validate_loads_no_torch_and_changes_are_checked_again(tmp_path, tiny_model_dir, cached_tables):
    data = write_jsonl(tmp_path / "facts.jsonl", [json.loads(line) for line in FACTS.read_text().splitlines()[:40]])
    document = sft_config(tmp_path, tiny_model_dir, data)
    config = write_yaml(tmp_path / "config.yaml", document)
    assert "torch" in _validate(config, tmp_path)["heavy"]  # first time: the checks run
    before = _entries("training-arguments"), _entries("tokenized-data")
    assert _validate(config, tmp_path)["heavy"] == []  # unchanged: every outcome from the cache

    document["training_args"]["learning_rate"] = 0.001
    write_yaml(config, document)
    assert "torch" in _validate(config, tmp_path)["heavy"]  # the arguments are built again ...
    assert (_entries("training-arguments"), _entries("tokenized-data")) == (before[0] + 1, before[1])  # ... not data
    assert _validate(config, tmp_path)["heavy"] == []

    with data.open("a", encoding="utf-8") as file:  # one more row: the data is tokenized again
        file.write(FACTS.read_text().splitlines()[40] + "\n")
    assert "torch" in _validate(config, tmp_path)["heavy"]
    assert _entries("tokenized-data") == before[1] + 1
