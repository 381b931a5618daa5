"""An adapter directory given where a full model goes (`generate`'s model, `merge_adapter`'s base): one `error:`
line naming the base and the adapter to use, exit 2 — not transformers' 45-line traceback from its PEFT integration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from finetuning.cli import main as cli_main
from finetuning.model.adapter_dir import adapter_dir_as_model_problem
from tests.conftest import sft_config, write_yaml

LORA = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": {"r": 4, "target_modules": ["q_proj"]}}


@pytest.fixture(scope="module")
def lora_out(tmp_path_factory, tiny_model_dir) -> Path:
    """A 2-step LoRA run with chat-ml: the vocabulary grows, so the base to use is checkpoint-new-basemodel."""
    work = tmp_path_factory.mktemp("adapter-as-model")
    config = sft_config(work, tiny_model_dir, peft_conf=LORA, training_args={"max_steps": 2})
    assert cli_main(["sft", str(write_yaml(work / "lora.yaml", config))]) == 0
    return work / "out"


@pytest.mark.slow
def test_generate_names_the_base_and_the_adapter(lora_out, tmp_path, capsys):
    adapter = lora_out / "checkpoint-final"
    config = write_yaml(
        tmp_path / "gen.yaml",
        {"model_conf": {"model": str(adapter)}, "prompt_conf": {"type": "open-input", "input": "hi"}},
    )
    capsys.readouterr()
    assert cli_main(["generate", str(config), str(tmp_path / "o.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert (
        f"model_conf.model: {adapter} is a PEFT adapter, not a full model; use {lora_out / 'checkpoint-new-basemodel'}"
        f" as model_conf.model and {adapter} as model_conf.adapter" in err
    )
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.slow
def test_merge_adapter_console_script_exits_2(lora_out, tmp_path):
    adapter = lora_out / "checkpoint-final"
    result = subprocess.run(
        [sys.executable, "-m", "finetuning.tools.merge_adapter", str(adapter), str(adapter), str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"basemodel: {adapter} is a PEFT adapter, not a full model" in result.stderr
    assert f"use {lora_out / 'checkpoint-new-basemodel'} as basemodel and {adapter} as peftmodel" in result.stderr
    assert not (tmp_path / "m").exists()


def test_without_a_resized_base_the_recorded_base_is_named(tiny_model_dir, tmp_path):
    """A plain PEFT save (no checkpoint-new-basemodel beside it): adapter_config.json's base_model_name_or_path."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    problem = adapter_dir_as_model_problem(str(tmp_path / "adapter"), "basemodel", "peftmodel")
    assert problem == (
        f"basemodel: {tmp_path / 'adapter'} is a PEFT adapter, not a full model; use {tiny_model_dir} as basemodel "
        f"and {tmp_path / 'adapter'} as peftmodel"
    )


def test_full_models_and_hub_ids_pass(tiny_model_dir, lora_out):
    assert adapter_dir_as_model_problem(str(tiny_model_dir), "model_conf.model") is None
    assert adapter_dir_as_model_problem(str(lora_out / "checkpoint-new-basemodel"), "model_conf.model") is None
    assert adapter_dir_as_model_problem("org/model", "model_conf.model") is None
