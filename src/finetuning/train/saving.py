"""Final outputs: model (or adapter) + inference tokenizer + the resolved config, in `output_dir/<final name>`."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import shutil
import subprocess
from pathlib import Path

import yaml

from ..model.loading import base_model_reference
from ..paths import resolve_user_path
from .checkpoints import STAGING_DIR, staged_save, write_resume_record
from .fsdp import consolidated_save
from .model_card import final_losses, remove_trainer_draft_card, write_model_card, write_policy_card

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
    provenance = {"versions": package_versions(), "git_sha": git_sha(), **resolved.get("_provenance", {})}
    document = {**resolved, "_provenance": provenance}  # with the command line's overrides, if any (dotted.py)
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
        with consolidated_save(trainer):  # under FSDP: one full model.safetensors, whatever the checkpoints' type
            trainer.save_model(str(staged))  # the Trainer also saves processing_class (our inference-ready tokenizer)
        if main:
            tokenizer.save_pretrained(str(staged))
            write_resolved_config(staged, resolved)
            # how far this run got and with which settings: a re-run of the same config has nothing to do
            write_resume_record(staged, trainer.args, trainer.data_fingerprint, trainer.state, trainer.training_length)
            drop_reference_adapters(trainer.model, staged)
            write_policy_card(trainer.model, staged, resolved, final_losses(trainer.state.log_history))
    if main:
        remove_trainer_draft_card(directory.parent)
    logger.info("final model saved to %s", directory)
    return directory


def drop_reference_adapters(model, directory: Path) -> None:
    """TRL's DPO/KTO add a frozen `ref` adapter (a copy of a PRETRAINED_PEFT start) beside the policy; PEFT saves
    every adapter, `ref` in a subdirectory. The final output is the trained policy only; checkpoints keep `ref/`."""
    for name in getattr(model, "peft_config", {}):
        if name != model.active_adapter and (directory / name / "adapter_config.json").is_file():
            shutil.rmtree(directory / name)


# --- outputs that load anywhere -------------------------------------------------------------------------------------


def record_base_model(model, reference: str) -> None:
    """Every adapter of `model` records `reference` as base_model_name_or_path (PEFT writes what it is told, in every
    checkpoint and the final save); a full model has nothing to record."""
    for config in getattr(model, "peft_config", {}).values():
        config.base_model_name_or_path = reference


def write_generation_config(model, directory: Path) -> None:
    """PEFT saves no generation_config.json with an adapter: write the base's (with the end marker as eos)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(str(directory))


def install_output_extras(model, resolved: dict) -> None:
    """Every save of the policy (checkpoints and final) also writes its generation config and our model card, over
    PEFT's "[More Information Needed]" template (written inside save_pretrained). The tokenizer has the same kind of
    hook (model/tokenizer.install_inference_save)."""
    original_save = model.save_pretrained

    @functools.wraps(original_save)
    def save_pretrained(save_directory, *args, **kwargs):
        result = original_save(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_generation_config(model, Path(save_directory))
            write_policy_card(model, Path(save_directory), resolved)
        return result

    model.save_pretrained = save_pretrained


def prepare_policy(model, tokenizer, cfg, wrap, new_base: Path | None, resuming: bool):
    """Wrap the loaded (and resized) model with `wrap` (the adapter) and set it up to save outputs that load
    anywhere: the template's end marker as eos, adapters naming their base by absolute path (or the resized base),
    our model card. The resized base is written once per run (not again on resume), and only once the adapter was
    applied: a run that fails there leaves no `new_base` behind."""
    from ..config import dump_resolved_config
    from ..data.templates import get_template, resolve_markers

    resolved = dump_resolved_config(cfg)
    end_marker = resolve_markers(get_template(cfg.data_conf.chat_template_name), tokenizer).assistant_end
    set_generation_stop(model, tokenizer, end_marker)  # before any save: checkpoints, new base, final
    base = base_model_reference(cfg.run_conf.model)
    if new_base is None:
        model = wrap(model)
    else:
        if resuming and new_base.is_dir():
            model = wrap(model)
        else:
            model = _wrap_saving_new_base(model, tokenizer, new_base, wrap, base, resolved)
        base = str(resolve_user_path(new_base))
    record_base_model(model, base)
    install_output_extras(model, resolved)
    return model


def _wrap_saving_new_base(model, tokenizer, new_base: Path, wrap, original: str, resolved: dict):
    """Stage the resized base (train/checkpoints.staged_save), apply the adapter, then publish: an exception
    publishes nothing and the staged copy is removed."""
    from accelerate import PartialState

    state = PartialState()
    try:
        with staged_save(new_base, state, state.is_main_process) as staged:
            if state.is_main_process:
                model.save_pretrained(str(staged))
                tokenizer.save_pretrained(str(staged))
                write_model_card(staged, "new base", original, resolved, rows=len(tokenizer))
            model = wrap(model)
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(new_base.parent / STAGING_DIR, ignore_errors=True)
        raise
    logger.info("resized base model saved to %s (merge adapters onto this one)", new_base)
    return model
