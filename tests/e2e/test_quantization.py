"""QLoRA on CPU (bitsandbytes 0.50 runs 4- and 8-bit here): quantized base + LoRA trains; refusals are clear."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tests.conftest import sft_config, write_yaml
from tests.e2e.test_sft_cli import losses, run_cli

pytest.importorskip("bitsandbytes")

LORA = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}}
QUANT = {
    "4bit-nf4": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_use_double_quant": True,
    },
    "8bit": {"load_in_8bit": True},
}


@pytest.mark.parametrize("kind", sorted(QUANT))
@pytest.mark.slow
def test_qlora_trains_an_adapter_on_a_quantized_base(tmp_path, tiny_model_dir, kind):
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        peft_conf=LORA,
        quant_conf={"quantization_type": "bits-and-bytes", **QUANT[kind]},
        data_conf={"chat_template_name": "keep-original"},  # a quantized model cannot grow its vocabulary
        training_args={"max_steps": 12, "learning_rate": 0.01, "save_strategy": "steps", "save_steps": 12},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "qlora.yaml", config))) == 0
    history = losses(tmp_path / "out" / "checkpoint-12")
    assert all(torch.isfinite(torch.tensor(history)))
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3  # it learns
    final = tmp_path / "out" / "checkpoint-final"
    weights = load_file(final / "adapter_model.safetensors")
    assert weights and all(".lora_" in name for name in weights)
    assert json.loads((final / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_quantized_model_cannot_grow_its_vocabulary(tmp_path, tiny_model_dir, capsys):
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        peft_conf=LORA,
        quant_conf={"quantization_type": "bits-and-bytes", "load_in_4bit": True},
    )
    assert run_cli("sft", str(write_yaml(tmp_path / "qlora.yaml", config))) == 2
    assert "a quantized model cannot be resized" in capsys.readouterr().err
    # refused from config.json alone, before the weights load; a model with room for the tokens is accepted
    from finetuning.config import load_any_config
    from finetuning.model.loading import ModelSetupError, check_vocabulary_fits

    cfg = load_any_config(tmp_path / "qlora.yaml")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    check_vocabulary_fits(cfg.run_conf, tokenizer, quantized=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|new|>"]})
    with pytest.raises(ModelSetupError):
        check_vocabulary_fits(cfg.run_conf, tokenizer, quantized=True)
