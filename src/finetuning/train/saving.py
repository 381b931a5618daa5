"""Final outputs: model (or adapter) + inference tokenizer + the resolved config, in `output_dir/<final name>`."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import subprocess
from pathlib import Path

import yaml

from .checkpoints import staged_save

logger = logging.getLogger(__name__)

RESOLVED_CONFIG_NAME = "finetuning_config.yaml"
_VERSIONED = ("finetuning", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def git_sha() -> str | None:
    """The engine's git revision when run from a checkout (litgpt habit: know what produced a model)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_resolved_config(directory: Path, resolved: dict) -> Path:
    """The config as the engine understood it (defaults filled, legacy keys translated, secrets masked)."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {**resolved, "_provenance": {"versions": package_versions(), "git_sha": git_sha()}}
    path = directory / RESOLVED_CONFIG_NAME
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def set_generation_stop(model, tokenizer, end_marker: str) -> None:
    """Generation stops at the template's assistant end marker (and at plain eos), whatever the caller forgets."""
    end_id = tokenizer.convert_tokens_to_ids(end_marker)
    ids = [i for i in (end_id, tokenizer.eos_token_id) if isinstance(i, int) and i != tokenizer.unk_token_id]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "generation_config", None)
    if config is not None and ids:
        config.eos_token_id = sorted(set(ids), key=ids.index)
        if tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id


def save_final(trainer, tokenizer, directory: Path, end_marker: str, resolved: dict) -> Path:
    """Model (or adapter) + inference tokenizer + resolved config, staged and renamed into place like checkpoints:
    a job killed while saving never leaves a half-written final model that looks finished."""
    set_generation_stop(trainer.model, tokenizer, end_marker)
    main = trainer.is_world_process_zero()
    with staged_save(directory, trainer.accelerator, main) as staged:
        trainer.save_model(str(staged))  # the Trainer also saves processing_class (our inference-ready tokenizer)
        if main:
            tokenizer.save_pretrained(str(staged))
            write_resolved_config(staged, resolved)
    logger.info("final model saved to %s", directory)
    return directory
