"""The memory table (train/memory_plan.py) against numbers worked out by hand, and docs/multi-gpu.md against the
table the code generates now (so the page cannot drift from the estimate)."""

from __future__ import annotations

import math

import pytest

from finetuning.train.memory_plan import (
    GB,
    MODELS,
    adapter_training_state,
    full_training_state,
    generated_block,
    placements,
    smallest_gpu,
    training_state,
    update_page,
)
from tests.conftest import REPO

PAGE = REPO / "docs" / "multi-gpu.md"
BY_SIZE = {model.name.split()[0]: model for model in MODELS}


def test_full_fine_tuning_with_adamw_takes_16_bytes_a_parameter():
    """fp32 weights (4) + fp32 gradients (4) + AdamW's exp_avg and exp_avg_sq (4 + 4): 1B parameters, 16 GB."""
    state = full_training_state(10**9)
    assert state.total_bytes == 16 * 10**9
    assert (state.checkpoint.weights_bytes, state.gradient_bytes, state.checkpoint.optimizer_bytes) == (
        4 * 10**9,
        4 * 10**9,
        8 * 10**9,
    )
    assert full_training_state(10**9, optim="adamw_bnb_8bit").total_bytes == 10 * 10**9  # 8-bit states: 2 bytes


def test_published_shapes_give_the_published_parameter_counts():
    assert BY_SIZE["1B"].parameters == 1_235_814_400  # Llama-3.2-1B (tied embeddings)
    assert BY_SIZE["8B"].parameters == 8_030_261_248  # Llama-3.1-8B
    assert BY_SIZE["70B"].parameters == 70_553_706_496  # Llama-3.1-70B


def test_lora_r16_on_every_linear_layer_of_llama_3_8b():
    """r x (in + out) per wrapped layer: q, o 4096+4096; k, v 4096+1024; gate, up, down 4096+14336; x 32 layers =
    41,943,040, what PEFT's print_trainable_parameters reports for this model."""
    per_layer = 16 * (2 * 8192 + 2 * 5120 + 3 * 18432)
    assert BY_SIZE["8B"].lora_parameters() == 32 * per_layer == 41_943_040
    state = training_state(BY_SIZE["8B"], "LoRA")
    # bf16 base (2 bytes) + the adapter's fp32 weights, fp32 gradients and AdamW states (16 bytes)
    assert state.total_bytes == 8_030_261_248 * 2 + 41_943_040 * 16
    assert adapter_training_state(100, 10, frozen_bytes=0).total_bytes == 160


def test_qlora_base_is_about_a_quarter_of_bf16():
    model = BY_SIZE["70B"]
    lora, qlora = training_state(model, "LoRA"), training_state(model, "QLoRA")
    assert qlora.frozen_bytes == pytest.approx(lora.frozen_bytes * 0.28, rel=0.05)  # nf4 + absmax, bf16 embeddings


def test_sharding_divides_what_it_shards():
    model = BY_SIZE["8B"]
    state = training_state(model, "full")
    ddp, zero2, zero3, offload = placements(model, state, shards=8).values()
    assert ddp.gpu_bytes == state.total_bytes
    assert zero2.gpu_bytes == 4 * model.parameters + math.ceil(12 * model.parameters / 8)  # weights whole
    assert zero3.gpu_bytes == math.ceil(16 * model.parameters / 8) + 2 * model.largest_unit * 2  # + 2 bf16 units
    assert (offload.gpu_bytes, offload.host_bytes) == (2 * model.largest_unit * 2, state.total_bytes)


def test_what_fits_where():
    assert smallest_gpu(16 * GB) == 24 and smallest_gpu(22 * GB) == 48 and smallest_gpu(200 * GB) is None
    model = BY_SIZE["70B"]
    full = placements(model, training_state(model, "full"))
    assert smallest_gpu(full["DDP"].gpu_bytes) is None
    assert smallest_gpu(full["FSDP / ZeRO-3 ×8"].gpu_bytes) is None  # 70B full needs more than one 8-GPU node
    assert smallest_gpu(placements(model, training_state(model, "QLoRA"))["DDP"].gpu_bytes) == 48


def test_the_page_holds_the_table_the_code_generates_now(tmp_path):
    """Regenerate with `python -m finetuning.train.memory_plan --update docs/multi-gpu.md`."""
    text = PAGE.read_text(encoding="utf-8")
    assert generated_block() in text
    copy = tmp_path / "page.md"
    copy.write_text(text.replace("| 16.7 → 24 GB", "| 1.0 → 24 GB"), encoding="utf-8")
    assert update_page(copy) is True
    assert copy.read_text(encoding="utf-8") == text
