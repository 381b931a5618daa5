"""The VectorLM keys whose translation depends on the machine: processes (sharding, the total batch) and CUDA (bf16,
flash attention)."""

from __future__ import annotations

import copy

import pytest

from finetuning.config import validate_config
from finetuning.config.dialects import Context
from tests.config.dialects.test_vectorlm import GPU, SHIPPED, native_of, notices_of, problems_of


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(SHIPPED)


def test_on_a_gpu_use_mp_and_flash_attention_translate():
    native = native_of(SHIPPED, GPU)
    assert native["training_args"]["bf16"] is True
    assert native["run_conf"]["model_args"]["attn_implementation"] == "flash_attention_2"


def test_on_a_gpu_without_flash_attn_sdpa_with_a_notice():
    context = Context(cuda=True, flash_attn=False)
    assert native_of(SHIPPED, context)["run_conf"]["model_args"]["attn_implementation"] == "sdpa"
    assert any("flash_attn package is not installed" in notice for notice in notices_of(SHIPPED, context))


def test_flash_attention_needs_use_mp_on_a_gpu(config):
    config["train_parameters"]["use_mp"] = False
    assert problems_of(config, GPU) == [
        "train_parameters.use_flash_attention: flash attention runs in bf16 only: set train_parameters.use_mp: true "
        "(as VectorLM requires)"
    ]


def test_several_processes_full_shard_is_fsdp():
    context = Context(num_processes=4, cuda=True, flash_attn=True)
    native = native_of(SHIPPED, context)["training_args"]
    assert native["fsdp"] == "full_shard auto_wrap"
    assert native["fsdp_config"] == {
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "activation_checkpointing": True,  # FSDP's own, not the trainer's (one all-gather less)
        "cpu_ram_efficient_loading": True,  # low_cpu_mem_usage: rank 0 loads the weights
    }
    assert "activation_checkpointing" not in native
    assert native_of(SHIPPED, context)["batchsize_conf"]["total_train_batch_size"] == 8 * 4 * 4
    assert (
        "train_parameters.sharding_strategy: FULL_SHARD: FSDP over 4 processes, each decoder layer wrapped "
        in (notices_of(SHIPPED, context)[0])
    )
    validate_config(native_of(SHIPPED, context))


def test_shard_grad_op_and_no_shard(config):
    context = Context(num_processes=2)
    config["train_parameters"]["sharding_strategy"] = "SHARD_GRAD_OP"
    assert native_of(config, context)["training_args"]["fsdp"] == "shard_grad_op auto_wrap"
    config["train_parameters"]["sharding_strategy"] = "NO_SHARD"
    assert "fsdp" not in native_of(config, context)["training_args"]
    assert "train_parameters.sharding_strategy: NO_SHARD: data parallel over 2 processes, no sharding" in (
        notices_of(config, context)
    )


@pytest.mark.parametrize("strategy", ["HYBRID_SHARD", "_HYBRID_SHARD_ZERO2"])
def test_hybrid_sharding_is_refused_on_several_processes_only(config, strategy):
    config["train_parameters"]["sharding_strategy"] = strategy
    assert f"train_parameters.sharding_strategy: {strategy}: one process, no sharding" in notices_of(config)
    (problem,) = problems_of(config, Context(num_processes=8))
    assert problem.startswith(f"train_parameters.sharding_strategy: {strategy} (sharded within a node")
    assert "use FULL_SHARD (sharded over all processes) or NO_SHARD" in problem


def test_unknown_sharding_strategy(config):
    config["train_parameters"]["sharding_strategy"] = "full_shard"
    assert problems_of(config) == [
        "train_parameters.sharding_strategy: unknown sharding strategy 'full_shard'; did you mean 'FULL_SHARD'?"
    ]
