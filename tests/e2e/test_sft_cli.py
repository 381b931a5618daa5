"""End-to-end `finetuning sft` runs on the tiny local model: loss falls, outputs reload and generate, resume works."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetuning.cli import main
from tests.conftest import sft_config, write_yaml


def run_cli(*args: str) -> int:
    return main([*args])


def losses(checkpoint: Path) -> list[float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
def test_full_sft_loss_falls_and_outputs_reload_and_generate(tmp_path, tiny_model_dir):
    config = sft_config(
        tmp_path, tiny_model_dir, training_args={"max_steps": 40, "save_strategy": "steps", "save_steps": 40}
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "c.yaml", config))) == 0

    out = tmp_path / "out"
    history = losses(out / "checkpoint-40")
    assert sum(history[-5:]) / 5 < 0.5 * sum(history[:5]) / 5, history

    final = out / "checkpoint-final"
    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == 514  # chat-ml tokens added
    assert tokenizer.eos_token == "<|im_end|>"
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_id in model.generation_config.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of Tusello?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]
    # the run report beside the checkpoints
    assert (out / "loss_curve.svg").read_text(encoding="utf-8").startswith(("<svg", "<?xml"))
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 40
    assert str(final) in (out / "summary.md").read_text()
    resolved = yaml.safe_load((final / "finetuning_config.yaml").read_text())
    assert resolved["run_conf"]["model"] == str(tiny_model_dir)
    assert "transformers" in resolved["_provenance"]["versions"]


@pytest.mark.slow
def test_lora_with_vocab_expansion_then_continue_pretrained_adapter(tmp_path, tiny_model_dir):
    lora = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}}
    config = sft_config(tmp_path, tiny_model_dir, peft_conf=lora, training_args={"max_steps": 5})
    assert run_cli("sft", str(write_yaml(tmp_path / "lora.yaml", config))) == 0

    out = tmp_path / "out"
    new_base = out / "checkpoint-new-basemodel"
    assert AutoModelForCausalLM.from_pretrained(new_base).get_input_embeddings().weight.shape[0] == 514
    adapter_dir = out / "checkpoint-final"
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert set(adapter_config["modules_to_save"]) >= {"embed_tokens", "lm_head"}
    first = load_file(adapter_dir / "adapter_model.safetensors")
    assert any("lora_A" in name for name in first) and any("embed_tokens" in name for name in first)
    # the base weights themselves were not trained: the saved new base equals the original (plus mean rows)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    resized = AutoModelForCausalLM.from_pretrained(new_base)
    assert torch.equal(
        original.model.layers[0].self_attn.q_proj.weight, resized.model.layers[0].self_attn.q_proj.weight
    )

    continued = sft_config(
        tmp_path / "second",
        new_base,
        peft_conf={"peft_type": "PRETRAINED_PEFT", "name_or_path": str(adapter_dir)},
        training_args={"max_steps": 3},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "continue.yaml", continued))) == 0
    second = load_file(tmp_path / "second" / "out" / "checkpoint-final" / "adapter_model.safetensors")
    assert second.keys() == first.keys()
    lora_keys = [name for name in first if "lora_B" in name]
    assert any(not torch.equal(first[name], second[name]) for name in lora_keys)  # training continued


@pytest.mark.slow
def test_resume_auto_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir, caplog):
    def config(directory: Path, max_steps: int) -> Path:
        document = sft_config(
            directory,
            tiny_model_dir,
            run_conf={"resume_from_checkpoint": "auto"},
            training_args={"max_steps": max_steps, "save_strategy": "steps", "save_steps": 3},
        )
        return write_yaml(directory / f"c{max_steps}.yaml", document)

    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    interrupted.mkdir(), straight.mkdir()
    assert run_cli("sft", str(config(interrupted, 6))) == 0  # stands in for a run stopped after step 6
    with caplog.at_level(logging.INFO, logger="finetuning"):
        assert run_cli("sft", str(config(interrupted, 9))) == 0
    assert f"resuming from {interrupted / 'out' / 'checkpoint-6'}" in caplog.text
    assert run_cli("sft", str(config(straight, 9))) == 0

    resumed = load_file(interrupted / "out" / "checkpoint-final" / "model.safetensors")
    uninterrupted = load_file(straight / "out" / "checkpoint-final" / "model.safetensors")
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6)
    assert losses(interrupted / "out" / "checkpoint-9") == pytest.approx(losses(straight / "out" / "checkpoint-9"))


def test_validate_shows_tokens_with_trained_ones_marked(tmp_path, tiny_model_dir, capsys):
    path = write_yaml(tmp_path / "c.yaml", sft_config(tmp_path, tiny_model_dir))
    assert run_cli("--num-preprocess-workers", "2", "validate", str(path), "--show", "2") == 0
    shown = capsys.readouterr().out
    assert "data OK" in shown
    assert "«The capital of Tusello is Yorren.<|im_end|>»" in shown
    assert "<|im_start|>user\nWhat is the capital of Tusello?<|im_end|>" in shown  # prompt shown, not marked
    assert not (tmp_path / "out").exists()  # validate never trains or writes outputs
