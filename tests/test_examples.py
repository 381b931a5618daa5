"""Every shipped example config loads, opens with its launch command, and points at data that exists."""

from __future__ import annotations

import pytest

from finetuning.config import load_any_config
from finetuning.data.preference import validate_preference_data
from finetuning.data.sft import validate_sft_data
from tests.conftest import REPO, write_yaml
from tests.e2e.test_sft_cli import run_cli

# training configs; generate-*.yaml are generation configs, checked in tests/tools/test_generate.py
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("generate-"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_its_data_validates(path, monkeypatch):
    config = load_any_config(path)
    command = "sft" if config.method == "sft" else "dpo"
    assert path.read_text().splitlines()[0].startswith(f"# finetuning {command} examples/{path.name}")
    monkeypatch.chdir(REPO)  # example data paths are relative to the repo root, where users run them
    if config.method == "sft":
        files = validate_sft_data(config.data_conf, require_assistant=config.sft_args.train_on_completions_only)
    else:
        files = validate_preference_data(config.data_conf, config.method)
    assert files >= 1


def test_silogen_style_example_runs_with_only_the_model_changed(tmp_path, tiny_model_dir, monkeypatch):
    """A config in the published Silogen shape (legacy keys, weighted mix, auto split, LoRA) trains as written."""
    import yaml

    document = yaml.safe_load((REPO / "examples" / "sft-lora-chatml.yaml").read_text())
    document["run_conf"]["model"] = str(tiny_model_dir)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("CHECKPOINTS_PATH", str(tmp_path / "checkpoints"))  # output_dir is not in the example
    assert run_cli("sft", str(write_yaml(tmp_path / "example.yaml", document))) == 0
    final = tmp_path / "checkpoints" / "checkpoint-final"
    assert (final / "adapter_model.safetensors").exists()
    assert (tmp_path / "checkpoints" / "checkpoint-new-basemodel" / "model.safetensors").exists()
