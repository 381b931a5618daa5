"""The pre-load checks that ask the libraries themselves, so what they would reject at training time is found before
the weights load: the method's TrainingArguments / DPOConfig is built (transformers' and TRL's own argument checks, in
config-key wording), the adapter is applied to the model's meta-device skeleton (PEFT decides what target_modules
match; no weights read), and a `training_args.deepspeed` config must exist, parse and agree with the batch plan.

Each check returns its problems; a library error is turned into one here, where the library is called.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..check_keys import peft_targets_key, training_arguments_key
from ..checks_cache import cached_outcome
from ..errors import UserError
from .checkpoint_size import local_model_dir
from .deepspeed import DEEPSPEED_KEY, INSTALL_HINT, config_problems, deepspeed_installed, read_deepspeed_file

logger = logging.getLogger(__name__)


def meta_model(model_dir: Path, model_args):
    """The model's module tree on torch's meta device: its layer names and types, no weights read or allocated.
    None when its config cannot be built here (loading will say more)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    trust = bool(model_args.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    except Exception as error:  # noqa: BLE001 - any failure here is loading's to report, with its own context
        logger.info("adapter targets not checked: cannot build %s without weights (%s)", model_dir, error)
        return None


def adaptable_layer_names(model) -> list[str]:
    """Leaf names of the layers an adapter can wrap (Linear, GPT-2's Conv1D, Embedding, Conv), in model order."""
    import torch
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, Conv1D, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    names = (name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name and isinstance(module, kinds))
    return list(dict.fromkeys(names))


def _target_problem(error: ValueError, target_modules, names: list[str]) -> str:
    from ..errors import closest

    suggestions = []
    for target in [target_modules] if isinstance(target_modules, str) else list(target_modules or []):
        close = closest(str(target), names)
        if close is not None and close != target:
            suggestions.append(f"{target!r} → {close!r}")
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return (
        f"peft_conf.peft_kwargs.target_modules: {target_modules!r} matches no layer of the model ({error}){hint} "
        f"The model's layer names: {', '.join(names)} (a list names layers by these leaf names, a string is a "
        "regex over the full module names, 'all-linear' takes every linear layer but the output head)"
    )


def check_peft_targets(cfg) -> list[str]:
    """Wrap the model's meta-device skeleton with the configured adapter (PEFT itself decides what matches:
    target_modules lists, regex strings, all-linear, layers_to_transform), so a mismatch is found before the
    weights load, and before a resized base is saved."""
    peft_conf = cfg.peft_conf
    if peft_conf.peft_type in ("NO_PEFT", "PRETRAINED_PEFT"):
        return []
    model_dir = local_model_dir(cfg.run_conf)
    if model_dir is None or not (model_dir / "config.json").is_file():
        return []
    # the outcome is kept per model config + adapter settings: an unchanged pair is not built again (checks_cache)
    key = peft_targets_key(cfg, model_dir)
    return cached_outcome("peft-targets", key, lambda: _peft_target_problems(cfg, model_dir))


def _peft_target_problems(cfg, model_dir: Path) -> list[str]:
    peft_conf = cfg.peft_conf
    model = meta_model(model_dir, cfg.run_conf.model_args)
    if model is None:
        return []
    import peft

    options = {"peft_type": peft_conf.peft_type, "task_type": peft_conf.task_type, **peft_conf.peft_kwargs}
    try:
        peft.get_peft_model(model, peft.get_peft_config(options))
    except ValueError as error:
        if "target" not in str(error).lower():
            return [f"peft_conf.peft_kwargs: {error}"]
        return [_target_problem(error, peft_conf.peft_kwargs.get("target_modules"), adaptable_layer_names(model))]
    return []


def check_deepspeed(training_args: dict, plan=None) -> list[str]:
    """`training_args.deepspeed` (a JSON file's path, or the config mapping itself) must be a DeepSpeed config the
    engine can fill in: the file exists and parses, its batch fields agree with the batch plan (or say "auto"), the
    deepspeed package is installed, and FSDP is not asked for as well (both would shard the model)."""
    value = training_args.get("deepspeed")
    if not value:
        return []
    if isinstance(value, str):
        config, problems = read_deepspeed_file(value)
        if problems:
            return problems
    elif isinstance(value, dict):
        config = value
    else:
        return [f"{DEEPSPEED_KEY}: a JSON file's path or a mapping, not {type(value).__name__}"]
    problems = (
        [] if deepspeed_installed() else [f"{DEEPSPEED_KEY}: the deepspeed package is not installed; {INSTALL_HINT}"]
    )
    if training_args.get("fsdp"):
        problems.append(f"{DEEPSPEED_KEY}: DeepSpeed and training_args.fsdp both shard the model; choose one")
    if training_args.get("use_cpu") is False and _distributes_on_cpu():
        problems.append(
            "training_args.use_cpu: false with DeepSpeed on several CPU processes: DeepSpeed would size its batch for "
            "one process and stop; leave use_cpu out (the engine sets it) or set it to true"
        )
    return problems + (config_problems(config, plan) if plan is not None else [])


def _distributes_on_cpu() -> bool:
    from .arguments import distribute_on_cpu

    return distribute_on_cpu()


def check_training_arguments(cfg, plan) -> list[str]:
    """Build the method's TrainingArguments subclass as the recipe will, so every check transformers and TRL make at
    construction is found here; a bad deepspeed config is reported by check_deepspeed alone."""
    from .arguments import check_training_config

    problems = check_deepspeed(cfg.training_args, plan)
    skip = ("deepspeed",) if problems else ()

    def build() -> list[str]:
        try:
            check_training_config(cfg, plan, skip=skip)
        except UserError as error:  # the arguments class's own checks, worded in config keys (train/arguments.py)
            return error.problems
        return []

    # kept per exact inputs (training args, batch plan, launch, versions): unchanged ones are not built again
    return problems + cached_outcome("training-arguments", training_arguments_key(cfg, plan, skip), build)
