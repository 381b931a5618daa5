"""merge_adapter (logits equal base+adapter, dtype kept, resized vocabularies) and create_vllm_compatible_adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetuning.tools.merge_adapter import main as merge_main
from finetuning.tools.merge_adapter import parse_device_map
from finetuning.tools.vllm_adapter import BACKUP, NOT_COMPATIBLE_EXIT
from finetuning.tools.vllm_adapter import main as vllm_main
from tests.conftest import sft_config, write_yaml
from tests.e2e.test_sft_cli import run_cli

LORA = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}}
TOLERANCE = {"rtol": 0, "atol": 1e-5}  # fp32 tiny model: merged and unmerged differ only by rounding


def logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(
        ["<s>What is the capital of Tusello?", "<s>Who founded Lotuka?"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """A LoRA SFT run with chat-ml: the vocabulary grows, embeddings are trained with the adapter."""
    work = tmp_path_factory.mktemp("lora")
    config = sft_config(work, tiny_model_dir, peft_conf=LORA, training_args={"max_steps": 8, "learning_rate": 0.01})
    path = write_yaml(work / "lora.yaml", config)
    assert run_cli("sft", str(path)) == 0
    return work / "out", path


@pytest.mark.slow
def test_merged_model_equals_base_plus_adapter(lora_run, tmp_path):
    out, _ = lora_run
    adapter, new_base = out / "checkpoint-final", out / "checkpoint-new-basemodel"
    assert merge_main([str(new_base), str(adapter), str(tmp_path / "merged")]) == 0

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(new_base), adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()  # plain transformers, no peft
    torch.testing.assert_close(logits(merged, tokenizer), logits(reference, tokenizer), **TOLERANCE)
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").eos_token == "<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in merged.generation_config.eos_token_id


def test_merging_onto_the_original_base_resizes_it(lora_run, tiny_model_dir, tmp_path):
    out, _ = lora_run
    adapter = out / "checkpoint-final"
    assert merge_main([str(tiny_model_dir), str(adapter), str(tmp_path / "a")]) == 0
    assert merge_main([str(out / "checkpoint-new-basemodel"), str(adapter), str(tmp_path / "b")]) == 0
    first, second = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], **TOLERANCE)


def test_merge_keeps_the_base_dtype(tiny_model_dir, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    base.save_pretrained(tmp_path / "bf16")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bf16")
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    assert merge_main([str(tmp_path / "bf16"), str(tmp_path / "adapter"), str(tmp_path / "merged")]) == 0
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    assert {tensor.dtype for tensor in merged.values()} == {torch.bfloat16}
    size = sum(t.numel() * t.element_size() for t in merged.values())
    assert size == sum(
        t.numel() * t.element_size() for t in load_file(tmp_path / "bf16" / "model.safetensors").values()
    )


def test_device_map_argument():
    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"": "cpu"}') == {"": "cpu"}


@pytest.mark.slow
def test_merge_adapter_console_script_reports_user_errors(tmp_path, tiny_model_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "finetuning.tools.merge_adapter",
            str(tiny_model_dir),
            str(tmp_path),
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no adapter_config.json" in result.stderr and "Traceback" not in result.stderr


def adapter_with_embedding_copies(tiny_model_dir, directory: Path) -> Path:
    """A plain LoRA adapter whose file also carries embedding/output layers (PEFT's save_embedding_layers)."""
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(directory, save_embedding_layers=True)
    return directory


def test_vllm_adapter_keeps_only_lora_tensors_and_still_loads(tiny_model_dir, tmp_path, capsys):
    adapter = adapter_with_embedding_copies(tiny_model_dir, tmp_path / "adapter")
    before = load_file(adapter / "adapter_model.safetensors")
    assert any(".lora_" not in name for name in before)

    assert vllm_main([str(adapter)]) == 0
    after = load_file(adapter / "adapter_model.safetensors")
    assert after and all(".lora_" in name for name in after)
    assert not any("embed_tokens" in name or "lm_head" in name for name in after)
    assert load_file(adapter / BACKUP).keys() == before.keys()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    stripped = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter).eval()
    original = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    original.load_state_dict(
        {k.replace(".weight", ".default.weight") if ".lora_" in k else k: v for k, v in before.items()}, strict=False
    )
    torch.testing.assert_close(logits(stripped, tokenizer), logits(original.eval(), tokenizer), **TOLERANCE)

    capsys.readouterr()
    assert vllm_main([str(adapter)]) == 0  # idempotent
    assert "nothing to remove" in capsys.readouterr().out
    assert load_file(adapter / "adapter_model.safetensors").keys() == after.keys()


def test_vllm_adapter_refuses_to_strip_trained_embeddings(lora_run, tmp_path, capsys):
    out, config_path = lora_run
    adapter = out / "checkpoint-final"
    before = (adapter / "adapter_model.safetensors").read_bytes()
    # non-zero: a pipeline must not hand an adapter that was not made vLLM-compatible on to vLLM
    assert vllm_main(["--training-config", str(config_path), str(adapter)]) == NOT_COMPATIBLE_EXIT == 1
    err = capsys.readouterr().err
    assert "not made vLLM-compatible" in err and "the vocabulary grew during training" in err
    assert vllm_main([str(adapter)]) == 1  # without the config, the adapter's modules_to_save tells the same
    assert "modules_to_save" in capsys.readouterr().err
    script = [sys.executable, "-m", "finetuning.tools.vllm_adapter", str(adapter)]
    result = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # what a pipeline's `&&` sees
    assert (adapter / "adapter_model.safetensors").read_bytes() == before
    assert not (adapter / BACKUP).exists()


def test_vllm_adapter_explains_full_fine_tuning(tmp_path, tiny_model_dir, capsys):
    adapter = adapter_with_embedding_copies(tiny_model_dir, tmp_path / "adapter")
    config = write_yaml(tmp_path / "full.yaml", sft_config(tmp_path, tiny_model_dir))
    assert vllm_main(["--training-config", str(config), str(adapter)]) == 1
    assert "NO_PEFT" in capsys.readouterr().err
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
