"""The exact inputs of each check whose outcome `checks_cache` keeps: change one of them and the check runs again.

Each function returns JSON-able key parts (library versions and the engine's code stamp are added by the cache), or
None when an input cannot be pinned down cheaply (a hub model that is not a local directory): then the check simply
runs every time. Files count by their bytes, never by name or date.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from .checks_cache import file_digest
from .paths import resolve_user_path

# What a TrainingArguments built in this process reads besides its arguments: the launch and the devices.
_ENVIRONMENT_PREFIXES = ("ACCELERATE_", "CUDA_", "HIP_", "ROCR_", "XPU_", "PYTORCH_", "TORCH_", "NCCL_", "FSDP_")
_ENVIRONMENT_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")


def launch_environment() -> dict[str, Any]:
    """The environment variables a launch sets and the accelerator device files (which GPUs exist decides e.g.
    whether bf16 is allowed, and torch need not be imported to see them)."""
    variables = {k: v for k, v in os.environ.items() if k in _ENVIRONMENT_KEYS or k.startswith(_ENVIRONMENT_PREFIXES)}
    devices = sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/dri/renderD*") + glob.glob("/dev/kfd"))
    return {"variables": variables, "devices": devices}


def _deepspeed_file(training_args: dict) -> str | None:
    value = training_args.get("deepspeed")
    return file_digest(resolve_user_path(value)) if isinstance(value, str) and value else None


def training_arguments_key(cfg, plan, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Inputs of building the method's arguments class (train/arguments.py `check_training_config`): the training
    args (the hub token is not passed there, so it stays out), the batch plan, the overrides, the method's own
    settings, a deepspeed file's bytes, the launch environment."""
    training_args = {k: v for k, v in cfg.training_args.items() if k != "hub_token"}
    return {
        "method": cfg.method,
        "training_args": training_args,
        "skip": list(skip),
        "plan": vars(plan),
        "overrides": cfg.overrides.model_dump(mode="json"),
        "max_seq_length": cfg.sft_args.max_seq_length if cfg.method == "sft" else None,
        "deepspeed_file": _deepspeed_file(training_args),
        "launch": launch_environment(),
    }


def _model_code(model_dir: Path) -> dict[str, str]:
    """The model's own Python files (trust_remote_code runs them to build the skeleton)."""
    return {path.name: file_digest(path) for path in sorted(model_dir.glob("*.py"))}


def peft_targets_key(cfg, model_dir: Path) -> dict[str, Any]:
    """Inputs of wrapping the model's meta-device skeleton with the adapter: the model's config.json (and its code
    when remote code is trusted) and the adapter settings."""
    peft_conf = cfg.peft_conf
    trust = bool(cfg.run_conf.model_args.trust_remote_code)
    return {
        "model_config": file_digest(model_dir / "config.json"),
        "model_code": _model_code(model_dir) if trust else {},
        "trust_remote_code": trust,
        "peft": {"peft_type": peft_conf.peft_type, "task_type": peft_conf.task_type, **peft_conf.peft_kwargs},
    }


def _tokenizer_files(run_conf) -> dict[str, str] | None:
    """Every file of a local tokenizer directory except weights; None for a hub id (not pinned by bytes here)."""
    source = resolve_user_path(run_conf.tokenizer or run_conf.model)
    if not source.is_dir():
        return None
    folder = source / (run_conf.model_args.subfolder or "") if not run_conf.tokenizer else source
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_WEIGHT_SUFFIXES))
    return {path.name: file_digest(path) for path in files}


def data_files(data_conf) -> dict[str, str]:
    """Each dataset entry the config names, by its bytes (a saved dataset directory by its files', a Hub id by its
    revision, configuration and split: data/sources.py), from the run's one read of it."""
    from .data.readers import file_digest as entry_digest

    inputs = [data_conf.training_data, data_conf.validation_data]
    entries = [dataset for data_input in inputs for dataset in getattr(data_input, "datasets", None) or []]
    return {entry.path: entry_digest(entry) or "unreadable" for entry in entries}


def tokenized_data_key(cfg) -> dict[str, Any] | None:
    """Inputs of tokenizing the data as the recipe will (`finetuning validate`'s counts): data file bytes, the data
    section (template, splits, sampling), the tokenizer's files and settings, the length limits, the seed."""
    tokenizer_files = _tokenizer_files(cfg.run_conf)
    if tokenizer_files is None:
        return None
    run_conf = cfg.run_conf
    return {
        "method": cfg.method,
        "data_conf": cfg.data_conf.model_dump(mode="json"),
        "data_files": data_files(cfg.data_conf),
        "tokenizer_files": tokenizer_files,
        "tokenizer": [run_conf.use_fast_tokenizer, bool(run_conf.model_args.trust_remote_code)],
        "sft_args": cfg.sft_args.model_dump(mode="json") if cfg.method == "sft" else None,
        "max_length": cfg.training_args.get("max_length"),
        "max_prompt_length": getattr(cfg, "max_prompt_length", None),
        "seed": cfg.training_args.get("seed"),
    }
