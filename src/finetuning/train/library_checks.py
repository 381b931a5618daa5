"""The pre-load checks that ask the libraries themselves, so what they would reject at training time is found before
the weights load: the method's TrainingArguments / DPOConfig is built (transformers' and TRL's own argument checks, in
config-key wording), the adapter is applied to the model's meta-device skeleton (PEFT decides what target_modules
match; no weights read), and a `training_args.deepspeed` file must exist and parse.

Each check returns its problems; a library error is turned into one here, where the library is called.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..check_keys import peft_targets_key, training_arguments_key
from ..checks_cache import cached_outcome
from ..errors import UserError
from ..paths import resolve_user_path
from .checkpoint_size import local_model_dir

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


DEEPSPEED_KEY = "training_args.deepspeed"


def check_deepspeed(training_args: dict) -> list[str]:
    """`training_args.deepspeed` names a JSON file (a mapping is the config itself): it must exist and parse."""
    value = training_args.get("deepspeed")
    if not isinstance(value, str) or not value:
        return []
    path = resolve_user_path(value)
    if not path.is_file():
        return [
            f"{DEEPSPEED_KEY}: {path}: " + ("is a directory, not a JSON file" if path.is_dir() else "file not found")
        ]
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return [f"{DEEPSPEED_KEY}: {path}: not valid UTF-8 (a DeepSpeed config is a JSON file)"]
    except json.JSONDecodeError as error:
        return [f"{DEEPSPEED_KEY}: {path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})"]
    except OSError as error:
        return [f"{DEEPSPEED_KEY}: {path}: cannot be read ({error.strerror or error})"]
    return []


def check_training_arguments(cfg, plan) -> list[str]:
    """Build the method's TrainingArguments subclass as the recipe will, so every check transformers and TRL make at
    construction is found here; a bad deepspeed file is reported by check_deepspeed alone."""
    from .arguments import check_training_config

    problems = check_deepspeed(cfg.training_args)
    skip = ("deepspeed",) if problems else ()

    def build() -> list[str]:
        try:
            check_training_config(cfg, plan, skip=skip)
        except UserError as error:  # the arguments class's own checks, worded in config keys (train/arguments.py)
            return error.problems
        return []

    # kept per exact inputs (training args, batch plan, launch, versions): unchanged ones are not built again
    return problems + cached_outcome("training-arguments", training_arguments_key(cfg, plan, skip), build)
