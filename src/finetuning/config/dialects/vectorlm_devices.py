"""VectorLM's keys whose translation depends on the machine (`Context`): sharding, mixed precision, activation
checkpointing, flash attention and low-memory loading.

Without CUDA, the device keys a CPU cannot honour become notices (fp32, sdpa), so that a VectorLM config trains on a
laptop as written; one process shards nothing; several processes get the trainer's FSDP, configured as VectorLM
configures its own (decoder layers wrapped; activation checkpointing and rank-0 loading as FSDP options).
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.builder import Builder, Key
from finetuning.errors import did_you_mean

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
TP = "train_parameters"


def _sharding(b: Builder, path: str, value: Any) -> None:
    processes = b.context.num_processes
    if value not in SHARDING_STRATEGIES:
        hint = (
            did_you_mean(str(value).upper(), SHARDING_STRATEGIES)
            or f"; expected one of {', '.join(SHARDING_STRATEGIES)}"
        )
        b.problem(path, f"unknown sharding strategy {value!r}{hint}")
    elif processes == 1:
        b.notice(path, f"{value}: one process, no sharding")
    elif value == "NO_SHARD":
        b.notice(path, f"NO_SHARD: data parallel over {processes} processes, no sharding")
    elif "HYBRID" in value:
        b.problem(
            path,
            f"{value} (sharded within a node, replicated across nodes) is not supported by the trainer's FSDP2 "
            "(accelerate 1.15 builds hybrid sharding only from a ParallelismConfig object, and refuses one on CPU); "
            "use FULL_SHARD (sharded over all processes) or NO_SHARD (data parallel)",
        )
    else:
        option = "full_shard" if value == "FULL_SHARD" else "shard_grad_op"
        b.set("training_args.fsdp", f"{option} auto_wrap", source=path)
        b.set("training_args.fsdp_config", {"auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}, source=path)
        b.notice(path, f"{value}: FSDP over {processes} processes, each decoder layer wrapped (training_args.fsdp)")


def _fsdp(b: Builder) -> bool:
    return "fsdp" in b.native.get("training_args", {})


def _use_mp(b: Builder, path: str, value: Any) -> None:
    if not b.boolean(path, value):
        return
    if b.context.cuda:
        b.set("training_args.bf16", True, source=path)
    else:
        b.notice(path, "no CUDA device here: training in fp32 (bf16 mixed precision needs a GPU)")


def _activation_checkpointing(b: Builder, path: str, value: Any) -> None:
    if not b.boolean(path, value):
        return
    if _fsdp(b):  # FSDP's own checkpointing: the trainer's would add an all-gather to every backward pass
        b.native["training_args"]["fsdp_config"]["activation_checkpointing"] = True
        b.maps("training_args.fsdp_config.activation_checkpointing", path)
    else:
        b.set("training_args.activation_checkpointing", True, source=path)


def _flash_attention(b: Builder, path: str, value: Any) -> None:
    if not b.boolean(path, value):
        return
    if not b.context.cuda:
        b.notice(path, "no CUDA device here: sdpa attention instead of flash_attention_2")
        implementation = "sdpa"
    elif not b.context.flash_attn:
        b.notice(path, "the flash_attn package is not installed: sdpa attention instead (pip install flash-attn)")
        implementation = "sdpa"
    elif b.get("train_parameters.use_mp") is not True:
        b.problem(path, "flash attention runs in bf16 only: set train_parameters.use_mp: true (as VectorLM requires)")
        return
    else:
        implementation = "flash_attention_2"
    b.set("run_conf.model_args.attn_implementation", implementation, source=path)


def _low_cpu_mem_usage(b: Builder, path: str, value: Any) -> None:
    if not b.boolean(path, value):
        return
    if _fsdp(b):  # VectorLM's meaning under FSDP: rank 0 loads the weights, the others receive them
        b.native["training_args"]["fsdp_config"]["cpu_ram_efficient_loading"] = True
        b.maps("training_args.fsdp_config.cpu_ram_efficient_loading", path)
    else:
        b.notice(path, "not needed: transformers loads the weights without building a random model first")


DEVICE_KEYS: tuple[Key, ...] = (
    Key(
        f"{TP}.sharding_strategy",
        "translated",
        "one process: accepted, no sharding (notice). Several: FULL_SHARD / SHARD_GRAD_OP → `training_args.fsdp` "
        "(decoder layers auto-wrapped); NO_SHARD → data parallel; HYBRID_SHARD / _HYBRID_SHARD_ZERO2 refused (use "
        "FULL_SHARD or NO_SHARD)",
        _sharding,
    ),
    Key(f"{TP}.use_mp", "translated", "`training_args.bf16`; without CUDA: fp32, with a notice", _use_mp),
    Key(
        f"{TP}.use_activation_checkpointing",
        "translated",
        "`training_args.activation_checkpointing` (with FSDP: `fsdp_config.activation_checkpointing`)",
        _activation_checkpointing,
    ),
    Key(
        f"{TP}.use_flash_attention",
        "translated",
        "`run_conf.model_args.attn_implementation: flash_attention_2` (needs use_mp); without CUDA or flash_attn: "
        "sdpa, with a notice",
        _flash_attention,
    ),
    Key(
        f"{TP}.low_cpu_mem_usage",
        "accepted",
        "notice: transformers always loads weights without a random model first (with FSDP: "
        "`fsdp_config.cpu_ram_efficient_loading`)",
        _low_cpu_mem_usage,
    ),
)
