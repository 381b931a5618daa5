"""FSDP2 (`training_args.fsdp` / `fsdp_config`): validated against the installed transformers / accelerate, and
sharded for real on every platform.

On a GPU, accelerate turns the Trainer's FSDP plugin on by itself. On CPU it silently does not (MULTI_CPU is not
among the distributed types it switches to FSDP, platform-facts): the run would be plain DDP while the config says
FSDP. `FsdpOnEveryPlatform` puts the same plugin on the accelerator state there (distributed_type FSDP), which
shards with FSDP2 (verified: loss = DDP, each rank holds its half of every weight, checkpoints resume bit-exactly).
Whatever cannot be sharded is refused before the model loads; nothing degrades silently.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from ..errors import UserError, did_you_mean, did_you_mean_or_choices
from .distributed import num_processes

logger = logging.getLogger(__name__)

FSDP_KEY = "training_args.fsdp"
CONFIG_KEY = "training_args.fsdp_config"
# The legacy `fsdp` words (transformers' FSDPOption): a sharding strategy, `offload`, `auto_wrap`.
_RESHARD_AFTER_FORWARD = {"full_shard": True, "shard_grad_op": False}  # FSDP2's spelling of the two it has
_FSDP1_ONLY = ("no_shard", "hybrid_shard", "hybrid_shard_zero2")
_FSDP_WORDS = (*_RESHARD_AFTER_FORWARD, *_FSDP1_ONLY, "offload", "auto_wrap")
_STATE_DICT_TYPES = ("FULL_STATE_DICT", "SHARDED_STATE_DICT")  # FSDP2 has no LOCAL_STATE_DICT
# The keys transformers 5.24 reads, should its source not be readable (a zipped or compiled install).
_KNOWN_KEYS = (
    "version", "reshard_after_forward", "cpu_offload", "activation_checkpointing", "cpu_ram_efficient_loading",
    "state_dict_type", "auto_wrap_policy", "transformer_layer_cls_to_wrap", "min_num_params", "forward_prefetch",
    "backward_prefetch", "use_orig_params", "sync_module_states", "limit_all_gathers", "xla", "xla_fsdp_v2",
    "xla_fsdp_grad_ckpt", "xla_fsdp_settings",
)  # fmt: skip


@functools.cache
def accepted_config_keys() -> tuple[str, ...]:
    """The `fsdp_config` keys the installed transformers reads: taken from its own code (`_process_fsdp_args`
    reads them one by one with `fsdp_config.get("...")`; there is no list to import), so a transformers upgrade that
    adds or drops one is followed without a stale copy here."""
    import inspect
    import re

    from transformers import TrainingArguments

    try:
        source = inspect.getsource(TrainingArguments._process_fsdp_args)
    except (AttributeError, OSError, TypeError):
        return _KNOWN_KEYS
    keys = re.findall(r"fsdp_config(?:\.get\(|\.setdefault\(|\[)\s*[\"'](\w+)[\"']", source)
    return tuple(dict.fromkeys(keys)) or _KNOWN_KEYS


def fsdp_requested(training_args: dict) -> bool:
    """The config asks for FSDP and there is more than one process to shard over."""
    return bool(training_args.get("fsdp")) and num_processes() > 1


def fsdp_arguments(args: dict) -> dict:
    """The trainer's arguments with the FSDP settings settled: the legacy `fsdp` words folded into `fsdp_config`
    (transformers deprecates them), FSDP2 by default, every key checked against what the installed transformers
    reads, and the combinations the Trainer would refuse only after building the accelerator refused now. Runs in
    the pre-flight too (train/arguments.check_training_config), so `finetuning validate` reports the same."""
    if not args.get("fsdp"):
        if args.get("fsdp_config"):
            raise UserError(f"{CONFIG_KEY}: given, but {FSDP_KEY} is not set (set it to true to shard, or remove it)")
        return {key: value for key, value in args.items() if key not in ("fsdp", "fsdp_config")}
    config = _config_mapping(args.get("fsdp_config"))
    words = _fsdp_words(args["fsdp"])
    _check_combinations(args, config)
    config["version"] = _version(config.get("version", 2))
    _fold_words(words, config, config["version"])
    _check_values(config)
    if num_processes() == 1:
        from ..model.loading import has_accelerator

        if not has_accelerator():  # accelerate would leave it out anyway (and the plugin cannot be forced on)
            logger.warning("%s: one process, nothing to shard: training without FSDP", FSDP_KEY)
            return {key: value for key, value in args.items() if key not in ("fsdp", "fsdp_config")}
        logger.warning("%s: one process, nothing to shard (left to accelerate, e.g. for cpu_offload)", FSDP_KEY)
    return {**args, "fsdp": True, "fsdp_config": config}


def _config_mapping(value) -> dict:
    """`fsdp_config` as a mapping with transformers' spelling (`fsdp_version` → `version`); a string is a JSON file."""
    if value is None:
        return {}
    if isinstance(value, str):
        from ..paths import read_json_object_file

        value, problems = read_json_object_file(value, CONFIG_KEY, "an FSDP config")
        if problems:
            raise UserError(problems)
    if not isinstance(value, dict):
        raise UserError(f"{CONFIG_KEY}: expected a mapping (or the path of a JSON file), got {value!r}")
    accepted = accepted_config_keys()
    config, problems = {}, []
    for key, option in value.items():
        name = str(key).removeprefix("fsdp_")
        if name not in accepted:
            hint = did_you_mean(name, accepted) or f"; accepted: {', '.join(accepted)}"
            problems.append(f"{CONFIG_KEY}.{key}: unknown FSDP option (not read by transformers){hint}")
        config[name] = option
    if problems:
        raise UserError(problems)
    return config


def _fsdp_words(value) -> list[str]:
    if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
        return []
    words = value.split() if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if words is None:
        raise UserError(f"{FSDP_KEY}: expected true or FSDP words such as 'full_shard auto_wrap', got {value!r}")
    words = [str(word).lower() for word in words]
    if unknown := [word for word in words if word not in _FSDP_WORDS]:
        raise UserError(
            [f"{FSDP_KEY}: unknown option {word!r}{did_you_mean_or_choices(word, _FSDP_WORDS)}" for word in unknown]
        )
    return words


def _version(value) -> int:
    """FSDP2 (the default). FSDP1 only where accelerate itself sets it up (a GPU): transformers deprecates it and
    the CPU route here (forcing the plugin on) is verified for FSDP2 only."""
    from ..model.loading import has_accelerator

    if isinstance(value, bool) or value not in (1, 2, "1", "2"):
        raise UserError(f"{CONFIG_KEY}.version: {value!r}: expected 2 (FSDP2) or 1 (the deprecated FSDP1)")
    if int(value) == 1 and not has_accelerator():
        raise UserError(
            f"{CONFIG_KEY}.version: 1 (FSDP1) runs on GPUs only here, and transformers deprecates it; "
            "use version 2 (the default)"
        )
    return int(value)


def _fold_words(words: list[str], config: dict, version: int) -> None:
    """The words as `fsdp_config` entries, as transformers would fold them (fsdp_config's own values win)."""
    for word in words:
        if word == "offload":
            config.setdefault("cpu_offload", True)
        elif word in _RESHARD_AFTER_FORWARD and version == 2:
            config.setdefault("reshard_after_forward", _RESHARD_AFTER_FORWARD[word])
        elif word in _FSDP1_ONLY and version == 2:
            hint = (
                "several processes train data-parallel (DDP) without it: remove training_args.fsdp"
                if word == "no_shard"
                else "use full_shard (sharded over all processes)"
            )
            raise UserError(f"{FSDP_KEY}: {word} does not exist in FSDP2; {hint}")
        elif word != "auto_wrap":
            config.setdefault("reshard_after_forward", word)  # FSDP1 takes the strategy's name


def _check_values(config: dict) -> None:
    from accelerate.utils.constants import FSDP_AUTO_WRAP_POLICY

    problems = []
    state_dict_type = str(config.get("state_dict_type", "FULL_STATE_DICT")).upper()
    if state_dict_type not in _STATE_DICT_TYPES:
        problems.append(
            f"{CONFIG_KEY}.state_dict_type: {config['state_dict_type']!r}"
            f"{did_you_mean_or_choices(state_dict_type, _STATE_DICT_TYPES)}"
        )
    policy = config.get("auto_wrap_policy", FSDP_AUTO_WRAP_POLICY[0])
    if policy not in FSDP_AUTO_WRAP_POLICY:
        problems.append(
            f"{CONFIG_KEY}.auto_wrap_policy: {policy!r}{did_you_mean_or_choices(policy, FSDP_AUTO_WRAP_POLICY)}"
        )
    if problems:
        raise UserError(problems)
    if "state_dict_type" in config:
        config["state_dict_type"] = state_dict_type


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _check_combinations(args: dict, config: dict) -> None:
    """What the Trainer checks only once its accelerator is built (and, on CPU, not at all: the plugin is put on
    after those checks), or what would quietly fight: checked here, before any model loads."""
    problems = []
    if args.get("deepspeed"):
        problems.append(f"{FSDP_KEY}: FSDP and training_args.deepspeed both shard the model; choose one")
    if args.get("activation_checkpointing") and _truthy(config.get("activation_checkpointing")):
        problems.append(
            "training_args.activation_checkpointing: with FSDP, use fsdp_config.activation_checkpointing alone "
            "(the trainer's would add an all-gather to every backward pass)"
        )
    if args.get("save_only_model") and config.get("state_dict_type") == "SHARDED_STATE_DICT":
        problems.append(f"training_args.save_only_model: cannot be used with {CONFIG_KEY}.state_dict_type SHARDED")
    if args.get("save_only_model") and args.get("load_best_model_at_end"):
        problems.append("training_args.save_only_model: FSDP cannot load the best model at the end from such saves")
    if problems:
        raise UserError(problems)


# --- the trainer -----------------------------------------------------------------------------------------------------


class FsdpOnEveryPlatform:
    """Trainer mixin: the FSDP plugin the Trainer built from `fsdp_config` is made active on several CPU processes,
    where accelerate leaves it out (platform-facts route (b)); elsewhere a requested FSDP that accelerate did not set
    up is an error, not a DDP run. The run logs how much of the weights this process holds (ShardingReport)."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if self.args.fsdp_plugin_args is None or self.is_fsdp_enabled or self.accelerator.num_processes == 1:
            return  # no FSDP asked for, accelerate set it up itself, or one GPU process (nothing to shard)
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = self.accelerator.state
        if state.distributed_type != DistributedType.MULTI_CPU:
            raise UserError(
                f"{FSDP_KEY}: accelerate set up {state.distributed_type.value} instead of FSDP, which would train "
                "unsharded; launch with torchrun / accelerate launch over several processes"
            )
        plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        if state.mixed_precision != "no":  # what accelerate does on a GPU; without it bf16 is silently fp32
            plugin.set_mixed_precision(state.mixed_precision)
        state.fsdp_plugin = plugin
        state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.is_fsdp_enabled = True

    def _prepare_for_training(self, *args, **kwargs):
        model, dataloader = super()._prepare_for_training(*args, **kwargs)
        if self.is_fsdp_enabled:
            policy = getattr(self.accelerator.state.fsdp_plugin, "mixed_precision_policy", None)
            log_sharding(self.model, self.accelerator.num_processes, getattr(policy, "param_dtype", None))
        return model, dataloader


def log_sharding(model, processes: int, compute_dtype=None) -> None:
    """`FSDP2: sharded N parameters over W processes`, from the parameters' DTensor local shapes (what this
    process really holds), with one example and the dtype FSDP computes in: the proof that the run shards (and
    that bf16 is not silently fp32), read by the tests."""
    from torch.distributed.tensor import DTensor

    sharded = [(name, p) for name, p in model.named_parameters() if isinstance(p, DTensor)]
    split = [(name, p) for name, p in sharded if tuple(p.to_local().shape) != tuple(p.shape)]
    if not split:
        logger.warning("FSDP: no parameter is sharded over the %d processes", processes)
        return
    local = sum(p.to_local().numel() for _, p in sharded)
    full = sum(p.numel() for _, p in sharded)
    name, example = split[0]
    logger.info(
        "FSDP2: sharded %d parameters over %d processes; this process holds %d of their %d elements "
        "(%s: local %s of %s); computed in %s",
        len(split),
        processes,
        local,
        full,
        name,
        tuple(example.to_local().shape),
        tuple(example.shape),
        str(compute_dtype or example.dtype).removeprefix("torch."),
    )


@contextlib.contextmanager
def consolidated_save(trainer):
    """`save_model` under FSDP writes one consolidated model only with FULL_STATE_DICT (with SHARDED_STATE_DICT it
    silently writes nothing): switched for the final save, switched back after."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None) if trainer.is_fsdp_enabled else None
    if plugin is None or "FULL_STATE_DICT" in str(plugin.state_dict_type):
        yield
        return
    saved = plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # rebuilt for the full type
    plugin.set_state_dict_type("FULL_STATE_DICT")
    try:
        yield
    finally:
        plugin.state_dict_type, plugin.state_dict_config, plugin.optim_state_dict_config = saved


# --- QLoRA ------------------------------------------------------------------------------------------------------------


def fsdp_quant_storage(run_conf, quant_conf) -> str | None:
    """The `bnb_4bit_quant_storage` a 4-bit model needs under FSDP: FSDP flattens a unit's parameters together, so the
    packed 4-bit weights must be stored in the dtype of the model's other parameters (the peft / bitsandbytes FSDP
    QLoRA rule). None when nothing is quantized to 4 bit."""
    if quant_conf.quantization_type != "bits-and-bytes" or not quant_conf.load_in_4bit:
        return None
    dtype = run_conf.model_args.torch_dtype
    if dtype in (None, "auto"):  # the checkpoint's dtype, from its config.json
        from ..model.loading import model_config

        config = model_config(run_conf)
        dtype = str(getattr(config, "dtype", None) or "float32") if config is not None else "float32"
    return str(dtype).removeprefix("torch.")


def fsdp_quantization_problems(cfg) -> list[str]:
    """QLoRA + FSDP: a `bnb_4bit_quant_storage` given by the user must be the dtype of the other parameters."""
    if not fsdp_requested(cfg.training_args):
        return []
    needed = fsdp_quant_storage(cfg.run_conf, cfg.quant_conf)
    given = getattr(cfg.quant_conf, "bnb_4bit_quant_storage", None)
    if needed is None or given is None or given.removeprefix("torch.") == needed:
        return []
    return [
        f"quant_conf.bnb_4bit_quant_storage: {given} under FSDP must be the dtype of the model's other parameters "
        f"({needed}, run_conf.model_args.torch_dtype): set it to {needed}, or leave it out and the engine sets it"
    ]


def sharded_checkpoint_problems(training_args: dict, checkpoint: str | None) -> list[str]:
    """A checkpoint saved as FSDP shards (SHARDED_STATE_DICT: `pytorch_model_fsdp_0/`) loads only into an FSDP
    run; the Trainer would find out after loading the model."""
    from pathlib import Path

    if checkpoint is None or not (Path(checkpoint) / "pytorch_model_fsdp_0").is_dir() or fsdp_requested(training_args):
        return []
    return [
        f"run_conf.resume_from_checkpoint: {checkpoint} holds FSDP shards (state_dict_type SHARDED_STATE_DICT), "
        "which only an FSDP run loads: resume with training_args.fsdp over several processes"
    ]
