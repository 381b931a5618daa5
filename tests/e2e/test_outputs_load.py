"""Saved outputs load anywhere with plain transformers / PEFT: adapters name their (resized) base by absolute path,
every model directory stops generation at the template's end marker and carries a real model card, and the resized
base is written once, only by a run whose adapter was applied."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from finetuning.tools.merge_adapter import main as merge_main
from tests.conftest import sft_config, write_yaml
from tests.e2e.test_sft_cli import run_cli

LORA = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}}


def relative_lora_config(work: Path, tiny_model_dir: Path, **training_args) -> Path:
    """A chat-ml LoRA run (the vocabulary grows) whose model and output_dir are relative to `work`."""
    os.symlink(tiny_model_dir, work / "base")
    args = {"output_dir": "out", "max_steps": 4, "save_strategy": "steps", "save_steps": 2, **training_args}
    config = sft_config(work, tiny_model_dir, peft_conf=LORA, run_conf={"model": "base"}, training_args=args)
    return write_yaml(work / "lora.yaml", config)


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory, tiny_model_dir) -> Path:
    work = tmp_path_factory.mktemp("relative")
    config = relative_lora_config(work, tiny_model_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert run_cli("sft", "lora.yaml") == 0, config
    return work / "out"


def end_marker_id(directory: Path) -> int:
    return AutoTokenizer.from_pretrained(directory).convert_tokens_to_ids("<|im_end|>")


@pytest.mark.parametrize("adapter", ["checkpoint-final", "checkpoint-2"])
@pytest.mark.slow
def test_adapters_load_with_plain_libraries_from_another_directory(relative_run, tmp_path, monkeypatch, adapter):
    directory = relative_run / adapter
    new_base = relative_run / "checkpoint-new-basemodel"
    recorded = json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(new_base.resolve())  # absolute, and the resized base (514 rows), not the original (512)

    monkeypatch.chdir(tmp_path)  # elsewhere: a relative base path would now be looked up on the Hub (offline: fails)
    with_peft = AutoPeftModelForCausalLM.from_pretrained(directory)
    plain = AutoModelForCausalLM.from_pretrained(directory)  # transformers' own PEFT integration
    rows = len(AutoTokenizer.from_pretrained(directory))
    assert with_peft.get_input_embeddings().weight.shape[0] == plain.get_input_embeddings().weight.shape[0] == rows
    assert end_marker_id(directory) in with_peft.generation_config.eos_token_id


def test_every_saved_model_dir_stops_at_the_end_marker(relative_run, tmp_path):
    merged = tmp_path / "merged"
    new_base, final = relative_run / "checkpoint-new-basemodel", relative_run / "checkpoint-final"
    assert merge_main([str(new_base), str(final), str(merged)]) == 0
    stop = end_marker_id(final)
    for directory in (new_base, final, relative_run / "checkpoint-2", merged):
        assert stop in GenerationConfig.from_pretrained(directory).eos_token_id, directory


def test_model_cards_describe_the_run(relative_run, tmp_path):
    merged = tmp_path / "merged"
    final, new_base = relative_run / "checkpoint-final", relative_run / "checkpoint-new-basemodel"
    assert merge_main([str(new_base), str(final), str(merged)]) == 0
    for directory in (final, relative_run / "checkpoint-2", new_base, merged):
        card = (directory / "README.md").read_text()
        assert "More Information Needed" not in card and "[None]" not in card, directory
        assert str(new_base.resolve()) in card or str(Path(relative_run.parent / "base").resolve()) in card
        assert "facts.jsonl" in card and "chat-ml" in card and "from_pretrained(directory)" in card
    assert "AutoPeftModelForCausalLM" in (final / "README.md").read_text()
    assert "final training loss" in (final / "README.md").read_text()
    assert "514 tokens" in (new_base / "README.md").read_text()
    assert not (relative_run / "README.md").exists()  # TRL's draft card ("fine-tuned version of [None]")


@pytest.mark.slow
def test_the_resized_base_is_written_once(tmp_path, tiny_model_dir, monkeypatch):
    config = relative_lora_config(tmp_path, tiny_model_dir)
    monkeypatch.chdir(tmp_path)
    assert run_cli("sft", str(config)) == 0
    weights = tmp_path / "out" / "checkpoint-new-basemodel" / "model.safetensors"
    before = weights.stat()
    document = sft_config(
        tmp_path,
        tiny_model_dir,
        peft_conf=LORA,
        run_conf={"model": "base", "resume_from_checkpoint": "auto"},
        training_args={"output_dir": "out", "max_steps": 6, "save_strategy": "steps", "save_steps": 2},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "longer.yaml", document))) == 0
    assert json.loads((tmp_path / "out" / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_run_whose_adapter_fails_leaves_no_resized_base(tmp_path, tiny_model_dir):
    bad = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "target_modules": ["no_such_proj"]}}
    config = sft_config(tmp_path, tiny_model_dir, peft_conf=bad)
    assert run_cli("sft", str(write_yaml(tmp_path / "bad.yaml", config))) == 2
    out = tmp_path / "out"
    assert not (out / "checkpoint-new-basemodel").exists()
    assert not (out / ".staging").exists()


@pytest.mark.slow
def test_dpo_from_a_pretrained_adapter_saves_the_policy_without_trl_reference_copy(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from tests.e2e.test_dpo import dpo_config

    start = tmp_path / "start-adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).save_pretrained(start)
    args = {"max_steps": 2, "save_strategy": "steps", "save_steps": 2}
    config = dpo_config(
        tmp_path,
        tiny_model_dir,
        peft_conf={"peft_type": "PRETRAINED_PEFT", "name_or_path": str(start)},
        data_conf={"chat_template_name": "keep-original"},
        training_args=args,
        run_conf={"model": str(tiny_model_dir), "resume_from_checkpoint": "auto"},
    )
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    out = tmp_path / "out"
    assert (out / "checkpoint-2" / "ref" / "adapter_config.json").is_file()  # TRL's frozen reference, for resuming
    assert not (out / "checkpoint-final" / "ref").exists()  # the final output is the trained policy alone
    policy = AutoPeftModelForCausalLM.from_pretrained(out / "checkpoint-final")
    assert list(policy.peft_config) == ["default"]

    config["training_args"]["max_steps"] = 4  # a longer run resumes from the checkpoint that has ref/
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
