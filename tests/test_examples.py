"""Every shipped example config loads, opens with its launch command, and points at data that exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from finetuning.config import load_any_config
from finetuning.data.preference import preference_data_problems
from finetuning.data.sft import sft_data_problems
from finetuning.data.vectorlm_checks import without_waiting_entries
from tests.conftest import REPO, write_yaml
from tests.e2e.test_sft_cli import run_cli

# training configs (axolotl's own in examples/axolotl, the sectioned framework's in examples/sectioned); generate-*.yaml
# are generation configs, checked in tests/tools/test_generate.py
EXAMPLES = (
    sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("generate-"))
    + sorted((REPO / "examples" / "axolotl").glob("*.y*ml"))
    + sorted((REPO / "examples" / "sectioned").glob("*.yaml"))
)


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_its_data_validates(path, monkeypatch):
    config = load_any_config(path)
    command = "sft" if config.method == "sft" else "dpo"
    assert path.read_text().splitlines()[0].startswith(f"# finetuning {command} {path.relative_to(REPO).as_posix()}")
    monkeypatch.chdir(REPO)  # example data paths are relative to the repo root, where users run them
    if config.method == "sft":  # data that data_conf.preprocess writes first (VectorLM examples) is checked then
        data_conf = without_waiting_entries(config.data_conf)
        problems = sft_data_problems(data_conf, require_assistant=config.sft_args.train_on_completions_only)
    else:
        problems = preference_data_problems(config.data_conf, config.method)
    assert problems == []


# What the examples start from: the demo's tiny base (examples/demo.py builds it, and the same with Llama 3's special
# tokens for axolotl's Llama-3 examples) and the demo's SFT output.
DEMO_MODELS = {"demo_output/tiny-base", "demo_output/tiny-llama3", "demo_output/checkpoints/checkpoint-final"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_starts_from_a_model_the_demo_makes(path):
    """Not from a path of someone's machine (`/local_resources/basemodel`): every example runs as shipped."""
    assert load_any_config(path).run_conf.model in DEMO_MODELS


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """A working directory laid out as the repository root is for a user: the shipped examples/ (linked, not
    copied) and the demo's tiny base built by examples/demo.py where the examples expect it. Outputs land here,
    never in the repository."""
    root = tmp_path_factory.mktemp("demo-root")
    (root / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    demo = load_demo()
    demo.build_base_model(root / "demo_output" / "tiny-base")
    demo.build_llama3_base(root / "demo_output" / "tiny-base", root / "demo_output" / "tiny-llama3")
    return root


@pytest.fixture
def in_demo_root(demo_root, monkeypatch) -> Path:
    monkeypatch.chdir(demo_root)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "WANDB_MODE"):  # a developer's own tracking stays out
        monkeypatch.delenv(name, raising=False)
    return demo_root


@pytest.mark.slow
def test_sft_lora_chatml_runs_as_shipped(in_demo_root):
    """The Silogen-shaped example (legacy keys, weighted mix, auto split, LoRA, chat-ml adds tokens) trains as
    written, with the command on its first line."""
    assert run_cli("sft", "examples/sft-lora-chatml.yaml") == 0
    out = in_demo_root / "demo_output" / "sft-lora-chatml"
    assert (out / "checkpoint-final" / "adapter_model.safetensors").exists()
    assert (out / "checkpoint-new-basemodel" / "model.safetensors").exists()
    assert (out / "summary.md").is_file()


@pytest.mark.slow
def test_the_demo_chain_runs_as_shipped(in_demo_root):
    """After the demo's SFT (here 2 epochs instead of 80: the only change), the DPO, KTO and generation examples run
    exactly as shipped on its output."""
    import yaml

    demo_sft = yaml.safe_load((REPO / "examples" / "demo-facts-sft.yaml").read_text())
    demo_sft["training_args"]["num_train_epochs"] = 2
    assert run_cli("sft", str(write_yaml(in_demo_root / "demo-facts-sft-short.yaml", demo_sft))) == 0
    assert (in_demo_root / "demo_output" / "checkpoints" / "checkpoint-final" / "model.safetensors").exists()
    for example, output in (("dpo-facts.yaml", "dpo"), ("kto-facts.yaml", "kto")):
        assert run_cli("dpo", f"examples/{example}") == 0, example
        assert (in_demo_root / "demo_output" / output / "checkpoint-final" / "adapter_model.safetensors").exists()
    assert run_cli("generate", "examples/generate-facts.yaml", "demo_output/generations.yaml") == 0
    assert len(yaml.safe_load((in_demo_root / "demo_output" / "generations.yaml").read_text())) == 100
