"""Whether a checkpoint to resume from fits the config, checked before any model loads: complete, the same kind of
model (adapter or full), the same adapter shape, the same batch split and the same data (train/checkpoints.py writes
what is compared into every checkpoint's resume record)."""

from __future__ import annotations

from pathlib import Path

from ..data.inputs import data_fingerprint
from ..paths import resolve_user_path
from .checkpoints import incomplete_reason, read_json_object, read_resume_record
from .distributed import num_processes

RESUME_KEY = "run_conf.resume_from_checkpoint"


def _adapter_problems(checkpoint: Path, cfg) -> list[str]:
    """Kind and shape of the checkpoint's model against peft_conf."""
    peft_conf = cfg.peft_conf
    adapter = (
        read_json_object(checkpoint / "adapter_config.json") if (checkpoint / "adapter_config.json").is_file() else None
    )
    if peft_conf.peft_type == "NO_PEFT":
        if adapter is not None:
            return [
                f"{RESUME_KEY}: {checkpoint}: holds a {adapter.get('peft_type', 'PEFT')} adapter, but "
                "peft_conf.peft_type is NO_PEFT; resume with the adapter settings it was trained with, or start fresh"
            ]
        return []
    if adapter is None:
        if (checkpoint / "adapter_config.json").is_file():
            return [f"{RESUME_KEY}: {checkpoint}: adapter_config.json cannot be read"]
        return [
            f"{RESUME_KEY}: {checkpoint}: holds a fully fine-tuned model (no adapter_config.json), but peft_conf "
            f"configures an adapter ({peft_conf.peft_type}); set peft_conf.peft_type: NO_PEFT, or start fresh"
        ]
    if peft_conf.peft_type == "PRETRAINED_PEFT":
        expected = read_json_object(resolve_user_path(peft_conf.name_or_path) / "adapter_config.json")
        if expected is None:
            return []
        key = "peft_conf.name_or_path"
        expected_type = expected.get("peft_type")
        expected_values = {"r": expected.get("r"), "target_modules": expected.get("target_modules")}
    else:
        key = "peft_conf.peft_kwargs"
        expected_type = peft_conf.peft_type
        options = peft_conf.get_peft_config()
        expected_values = {"r": getattr(options, "r", None), "target_modules": getattr(options, "target_modules", None)}
    if expected_type and adapter.get("peft_type") and adapter["peft_type"] != expected_type:
        return [
            f"{RESUME_KEY}: {checkpoint}: holds a {adapter['peft_type']} adapter, but the config trains "
            f"{expected_type}; restore peft_conf.peft_type: {adapter['peft_type']}, or start fresh"
        ]
    problems = []
    for name, want in expected_values.items():
        have = adapter.get(name)
        if want is None or have is None or want == "all-linear":  # resolved against the model when it loads
            continue
        if isinstance(want, (set, list, tuple)) and isinstance(have, list):
            want, have = sorted(want), sorted(have)
        if want != have:
            problems.append(
                f"{RESUME_KEY}: {checkpoint}: the adapter was trained with {name}={have!r}, but {key} gives "
                f"{want!r}; restore {name}: {have!r}, or start fresh"
            )
    return problems


def _batch_problems(checkpoint: Path, plan, cfg) -> list[str]:
    """The batch split must match, or resuming skips to the wrong place in the data."""
    record = read_resume_record(checkpoint)
    had = (
        record.get("per_device_train_batch_size"),
        record.get("gradient_accumulation_steps"),
        record.get("world_size"),
    )
    now = (plan.per_device_train_batch_size, plan.gradient_accumulation_steps, num_processes())
    if had[0] is None or all(old is None or old == new for old, new in zip(had, now, strict=True)):
        return []
    per_device, accumulation, processes = had
    described = f"{per_device} per device" + (f" x {accumulation} accumulation" if accumulation else "")
    described += f" x {processes} process(es)" if processes else ""
    if accumulation:
        restore = (
            f"batchsize_conf.total_train_batch_size: {per_device * accumulation * (processes or 1)} and "
            f"batchsize_conf.max_per_device_train_batch_size: {per_device}"
            + (f" on {processes} process(es)" if processes else "")
        )
    else:
        restore = f"batchsize_conf.max_per_device_train_batch_size: {per_device}"
    batch = cfg.batchsize_conf
    return [
        f"{RESUME_KEY}: {checkpoint}: was trained with {described}, but batchsize_conf (total "
        f"{batch.total_train_batch_size}, max per device {batch.max_per_device_train_batch_size}) now gives "
        f"{now[0]} per device x {now[1]} accumulation x {now[2]} process(es); the data position would no longer "
        f"match: restore {restore}, or start fresh"
    ]


def _data_problems(checkpoint: Path, cfg, fingerprint: str | None) -> list[str]:
    """Other data (or other data settings) than the checkpoint was trained on: the restored position would point
    into different examples."""
    recorded = read_resume_record(checkpoint).get("data_fingerprint")
    if recorded is None or recorded == (fingerprint or recipe_data_fingerprint(cfg)):
        return []
    return [
        f"{RESUME_KEY}: {checkpoint}: the data files or data settings (data_conf, max_seq_length) changed since "
        "this checkpoint was written, so its position in the data would point into other examples: restore them, "
        "or start fresh (a new training_args.output_dir, or resume_from_checkpoint: false)"
    ]


def recipe_data_fingerprint(cfg) -> str:
    """The data fingerprint of this config (what the recipe stores with each checkpoint)."""
    settings = {"method": cfg.method}
    if cfg.method == "sft":
        settings.update(cfg.sft_args.model_dump(mode="json"))
    else:
        settings.update(
            max_length=cfg.training_args.get("max_length"), max_prompt_length=getattr(cfg, "max_prompt_length", None)
        )
    return data_fingerprint(cfg.data_conf, settings)


def check_resume_target(cfg, plan, resume_from: str, fingerprint: str | None = None) -> list[str]:
    """The checkpoint resume_from_checkpoint chose: complete, same model kind and adapter shape, same batch split."""
    checkpoint = resolve_user_path(resume_from)
    if not checkpoint.is_dir():
        return [f"{RESUME_KEY}: {checkpoint}: no such checkpoint directory"]
    if (reason := incomplete_reason(checkpoint)) is not None:
        return [f"{RESUME_KEY}: {checkpoint}: incomplete checkpoint, {reason}"]
    return (
        _adapter_problems(checkpoint, cfg)
        + _batch_problems(checkpoint, plan, cfg)
        + _data_problems(checkpoint, cfg, fingerprint)
    )
