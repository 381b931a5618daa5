"""Pre-flight: everything that can be checked before a model loads, checked at once, every problem listed.

    run_preflight(cfg, plan, resume_from)     raises one UserError naming every problem found

1. `training_args.output_dir` is a writable directory, or can be created (a real file is written and removed);
2. the disk holding it has room for one checkpoint (`estimate_checkpoint_size`, logged);
3. every data file exists and every row parses (the validator `finetuning validate` uses);
4. the model path exists (or is a hub id: a similar local directory is suggested) and a local one is a model
   directory with safetensors weights; offline, a hub id must be in the local cache; an adapter's target_modules
   must match layers of the model (checked on its meta-device skeleton, no weights read);
5. the method's TrainingArguments / DPOConfig builds (transformers' own argument checks, in config-key wording), and
   a `training_args.deepspeed` file exists and parses;
6. a checkpoint to resume from fits the config: same kind of model (adapter or full), same adapter shape, same
   batch split, and complete.

The chat template needs no check here: `data_conf.chat_template_name` is a Literal of the known templates, so an
unknown name is already a config error. Paths are resolved against the working directory, as in the Silogen engine,
and every problem names the resolved absolute path.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.inputs import data_fingerprint
from ..data.preference import validate_preference_data
from ..data.sft import validate_sft_data
from ..errors import UserError
from ..model.loading import check_model_sources
from ..paths import resolve_user_path
from .batch_size import BatchPlan, plan_batches
from .checkpoints import (
    RunAlreadyFinished,
    finished_run,
    fresh_start_problem,
    incomplete_reason,
    read_resume_record,
    resolve_resume,
)
from .distributed import num_processes

logger = logging.getLogger(__name__)

OUTPUT_KEY = "training_args.output_dir"
RESUME_KEY = "run_conf.resume_from_checkpoint"

GiB = 1024**3
MiB = 1024**2

DTYPE_BYTES = {
    "float64": 8,
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}
# A checkpoint whose dtype is not recorded is taken as 16-bit: fewer bytes per parameter means more parameters per
# byte of weights, hence a larger optimizer state, so the estimate errs on the large side.
UNKNOWN_DTYPE_BYTES = 2
# AdamW keeps two state tensors (exp_avg, exp_avg_sq) per trainable parameter; counted as fp32, an upper bound
# (torch keeps them in the parameters' dtype). 8-bit optimizers keep them in one byte each.
ADAMW_STATE_BYTES = 8
EIGHT_BIT_STATE_BYTES = 2
# PEFT keeps adapter weights in fp32 (autocast_adapter_dtype), whatever the base model's dtype.
ADAPTER_WEIGHT_BYTES = 4
# When the adapter's size cannot be computed from its shape (pickle-only base, adapter types other than LoRA, a
# target_modules pattern no weight matches), it is taken as this fraction of the base model's parameters: LoRA r=64 on
# every linear layer of a 7B Llama is about 2.4%, so 5% is on the safe side for usual settings.
ADAPTER_FALLBACK_FRACTION = 0.05
_NOT_WEIGHT_BINS = ("training_args", "optimizer", "scheduler", "rng_state", "scaler")


# --- helpers ---------------------------------------------------------------------------------------------------------


def _collect(check: Callable[..., list[str]], *args) -> list[str]:
    """A check's problems; the UserErrors of the helpers it reuses (which return None when all is well) too."""
    try:
        return list(check(*args) or [])
    except UserError as error:
        return list(error.problems)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(size: float) -> str:
    if size >= GiB:
        return f"{size / GiB:.1f} GiB"
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    return f"{size / 1024:.1f} KiB"


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --- 1. output directory ---------------------------------------------------------------------------------------------


def _write_probe(directory: Path) -> str | None:
    """Create and remove a real file in `directory`; the reason it failed, or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".finetuning-write-test-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_output_dir(output_dir: str) -> list[str]:
    """An existing output dir must be a writable directory; a missing one must be creatable (nothing is created)."""
    path = resolve_user_path(output_dir)
    if path.exists():
        if not path.is_dir():
            return [f"{OUTPUT_KEY}: {path}: exists and is not a directory"]
        reason = _write_probe(path)
        return [f"{OUTPUT_KEY}: {path}: not writable ({reason})"] if reason else []
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        return [f"{OUTPUT_KEY}: {path}: cannot be created, {ancestor} is not a directory"]
    reason = _write_probe(ancestor)
    if reason:
        return [f"{OUTPUT_KEY}: {path}: not writable (cannot be created in {ancestor}: {reason})"]
    return []


# --- 2. checkpoint size estimate and disk space ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointEstimate:
    """What one checkpoint will take on disk, estimated before any model loads."""

    parameters: int  # of the base model
    trainable_parameters: int
    weights_bytes: int  # the model's (full fine-tuning) or the adapter's weights, as saved
    optimizer_bytes: int
    basis: str  # how the numbers were found, for the log line

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.optimizer_bytes

    def describe(self) -> str:
        return (
            f"about {format_bytes(self.total_bytes)} ({format_bytes(self.weights_bytes)} weights + "
            f"{format_bytes(self.optimizer_bytes)} optimizer state; {self.trainable_parameters:,} of "
            f"{self.parameters:,} parameters trained; {self.basis})"
        )


def weight_files(model_dir: Path) -> list[Path]:
    """The model's weight files: every *.safetensors (adapters excluded), else the pickle shards (*.bin)."""
    safetensors = sorted(p for p in model_dir.glob("*.safetensors") if not p.name.startswith("adapter_model"))
    if safetensors:
        return safetensors
    return sorted(p for p in model_dir.glob("*.bin") if not p.name.startswith(_NOT_WEIGHT_BINS + ("adapter_model",)))


def dtype_bytes(name: str | None) -> int | None:
    if not isinstance(name, str):
        return None
    return DTYPE_BYTES.get(name.removeprefix("torch."))


def optimizer_state_bytes(optim: str | None) -> int:
    """Bytes of optimizer state per trainable parameter (AdamW and its kin: 8; 8-bit optimizers: 2)."""
    return EIGHT_BIT_STATE_BYTES if optim and "8bit" in str(optim) else ADAMW_STATE_BYTES


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """(header size in bytes, header): a safetensors file is an 8-byte length, a JSON header, then the tensors."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return 8 + length, json.loads(handle.read(length))


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape, read from the header without loading any tensor."""
    return {name: info["shape"] for name, info in _safetensors_header(path)[1].items() if name != "__metadata__"}


def weights_bytes(files: list[Path]) -> int:
    """Bytes of tensor data in the weight files (a safetensors file's header is not counted)."""
    total = 0
    for path in files:
        total += path.stat().st_size
        if path.suffix == ".safetensors":
            total -= _safetensors_header(path)[0]
    return total


def _module_matches(module: str, target_modules) -> bool:
    """PEFT's rule: a string is a regex matched against the whole module name, a list matches name suffixes."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module) is not None
    return any(module == target or module.endswith("." + target) for target in target_modules)


def _lora_parameters(files: list[Path], model_type: str | None, r: int, target_modules) -> int | None:
    """r x (in + out) for every 2-D weight a LoRA adapter wraps; None when the shapes cannot be read."""
    if not files or any(path.suffix != ".safetensors" for path in files):
        return None
    if target_modules is None:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        target_modules = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type or "")
        if target_modules is None:
            return None
    total = 0
    for path in files:
        for name, shape in safetensors_shapes(path).items():
            if len(shape) != 2 or not name.endswith(".weight"):
                continue
            module = name.removesuffix(".weight")
            if target_modules == "all-linear":  # PEFT: every linear layer except the output layer
                wanted = not (module.endswith("lm_head") or "embed" in module)
            else:
                wanted = _module_matches(module, target_modules)
            if wanted:
                total += r * (shape[0] + shape[1])
    return total or None


def _adapter_parameters(files: list[Path], model_config: dict, peft_conf) -> tuple[int, str] | None:
    """(trainable adapter parameters, how they were found), or None to use the fallback fraction."""
    if peft_conf.peft_type == "PRETRAINED_PEFT":
        adapter = resolve_user_path(peft_conf.name_or_path) / "adapter_model.safetensors"
        if adapter.is_file():
            count = sum(math.prod(shape) for shape in safetensors_shapes(adapter).values())
            return count, "pretrained adapter's weights"
        return None
    if peft_conf.peft_type != "LORA":
        return None
    options = peft_conf.get_peft_config()
    count = _lora_parameters(files, model_config.get("model_type"), options.r, options.target_modules)
    return (count, f"LoRA r={options.r}") if count else None


def estimate_checkpoint_size(
    model_dir: Path, peft_conf, torch_dtype: str = "auto", optim: str | None = None
) -> CheckpointEstimate | None:
    """One checkpoint of training the model in `model_dir` (a local model directory), or None if it holds no weights.

    parameters = bytes of tensor data in the weight files / bytes per parameter of the stored dtype (config.json
    `dtype`, or the legacy `torch_dtype`; 2 when neither is recorded). Then, with o = optimizer state bytes per
    trainable parameter (8 for AdamW, 2 for 8-bit optimizers):
    full fine-tuning (NO_PEFT): weights = parameters x bytes of the training dtype (`run_conf.model_args.torch_dtype`,
    'auto' = the stored dtype), optimizer = parameters x o;
    an adapter: adapter parameters = r x (in + out) summed over the weights LoRA targets (read from the safetensors
    headers), or the pretrained adapter's parameter count, or else ADAPTER_FALLBACK_FRACTION x parameters;
    weights = adapter parameters x 4 (fp32), optimizer = adapter parameters x o.
    """
    files = weight_files(model_dir)
    if not files:
        return None
    model_config = _read_json(model_dir / "config.json") or {}
    stored = dtype_bytes(model_config.get("dtype") or model_config.get("torch_dtype")) or UNKNOWN_DTYPE_BYTES
    parameters = weights_bytes(files) // stored
    state = optimizer_state_bytes(optim)
    if peft_conf.peft_type == "NO_PEFT":
        saved = stored if torch_dtype in (None, "auto") else dtype_bytes(torch_dtype) or stored
        return CheckpointEstimate(
            parameters, parameters, parameters * saved, parameters * state, "full fine-tuning, weights + optimizer"
        )
    found = _adapter_parameters(files, model_config, peft_conf)
    if found is None:
        adapter, basis = math.ceil(parameters * ADAPTER_FALLBACK_FRACTION), "adapter taken as 5% of the model"
    else:
        adapter, basis = found
    return CheckpointEstimate(
        parameters, adapter, adapter * ADAPTER_WEIGHT_BYTES, adapter * state, f"{basis}, weights + optimizer"
    )


def local_model_dir(run_conf) -> Path | None:
    """The directory holding the model: a local path, or a hub id's snapshot in the local HF cache (never online)."""
    args = run_conf.model_args
    subfolder = args.subfolder or ""
    local = resolve_user_path(run_conf.model)
    if local.is_dir():
        return local / subfolder
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            run_conf.model, f"{subfolder}/config.json" if subfolder else "config.json", args.cache_dir, args.revision
        )
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    index = _read_json(snapshot / "model.safetensors.index.json")
    if index is not None and not all(
        (snapshot / shard).is_file() for shard in set(index.get("weight_map", {}).values())
    ):
        return None  # only partly downloaded
    return snapshot


def checkpoint_size_estimate(cfg) -> CheckpointEstimate | None:
    """The estimate for this config's model (logged), or None when the model's files are not on this machine."""
    model_dir = local_model_dir(cfg.run_conf)
    estimate = None
    if model_dir is not None and model_dir.is_dir():
        try:
            estimate = estimate_checkpoint_size(
                model_dir, cfg.peft_conf, cfg.run_conf.model_args.torch_dtype, cfg.training_args.get("optim")
            )
        except (OSError, ValueError, struct.error) as error:  # unreadable weights: loading will say more
            logger.info("checkpoint size estimate: skipped, the weights in %s cannot be read (%s)", model_dir, error)
            return None
    if estimate is None:
        logger.info("checkpoint size estimate: skipped, %s is not on this machine", cfg.run_conf.model)
    else:
        logger.info("checkpoint size estimate: %s", estimate.describe())
    return estimate


def saves_checkpoints(training_args: dict) -> bool:
    return training_args.get("save_strategy", "steps") not in ("no", False)


def check_disk_space(cfg) -> list[str]:
    """Free space on the output dir's file system against one checkpoint (the final model alone without
    checkpoints)."""
    estimate = checkpoint_size_estimate(cfg)
    if estimate is None:
        return []
    needed = estimate.total_bytes if saves_checkpoints(cfg.training_args) else estimate.weights_bytes
    what = "a checkpoint" if saves_checkpoints(cfg.training_args) else "the final model"
    path = resolve_user_path(cfg.training_args["output_dir"])
    try:
        free = shutil.disk_usage(_nearest_existing(path)).free
    except OSError as error:
        logger.info("free disk space of %s unknown (%s): not checked", path, error)
        return []
    if needed > free:
        return [f"{OUTPUT_KEY}: {path}: about {format_bytes(needed)} needed for {what}, {format_bytes(free)} free"]
    return []


# --- 3. data ---------------------------------------------------------------------------------------------------------


def validate_data_files(cfg) -> int:
    """Read and check every data file the config names with its method's row check (raises DataError listing every
    problem); returns the number of files. Shared with `finetuning validate`."""
    if cfg.method == "sft":
        return validate_sft_data(cfg.data_conf, require_assistant=cfg.sft_args.train_on_completions_only)
    return validate_preference_data(cfg.data_conf, cfg.method)


def check_data(cfg) -> list[str]:
    validate_data_files(cfg)
    return []


# --- 4. model --------------------------------------------------------------------------------------------------------


def check_model(cfg) -> list[str]:
    """Missing local paths, pickle-only weights (check_model_sources), and a local model dir without config.json."""
    problems = _collect(check_model_sources, cfg.run_conf, cfg.peft_conf)
    path = resolve_user_path(cfg.run_conf.model)
    if path.is_dir():
        model_dir = path / (cfg.run_conf.model_args.subfolder or "")
        if not (model_dir / "config.json").is_file():
            problems.append(f"run_conf.model: {model_dir}: no config.json there (not a model directory)")
    return problems


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
    import difflib

    suggestions = []
    for target in [target_modules] if isinstance(target_modules, str) else list(target_modules or []):
        close = difflib.get_close_matches(str(target), names, n=1)
        if close and close[0] != target:
            suggestions.append(f"{target!r} → {close[0]!r}")
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


# --- 5. training arguments -------------------------------------------------------------------------------------------

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
    check_training_config(cfg, plan, skip=("deepspeed",) if problems else ())
    return problems


# --- 6. resume target ------------------------------------------------------------------------------------------------


def _adapter_problems(checkpoint: Path, cfg) -> list[str]:
    """Kind and shape of the checkpoint's model against peft_conf."""
    peft_conf = cfg.peft_conf
    adapter = _read_json(checkpoint / "adapter_config.json") if (checkpoint / "adapter_config.json").is_file() else None
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
        expected = _read_json(resolve_user_path(peft_conf.name_or_path) / "adapter_config.json")
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


# --- all of them -----------------------------------------------------------------------------------------------------


def run_preflight(cfg, plan, resume_from: str | None, fingerprint: str | None = None) -> None:
    """Run every check before any model loads; raise one UserError listing all problems found.

    `plan` is the launch's BatchPlan (train/batch_size.py), `resume_from` the checkpoint resolve_resume chose,
    `fingerprint` this config's recipe_data_fingerprint when the caller has it already (computed here otherwise).
    """
    problems = _collect(check_model, cfg)
    if not problems:
        problems += _collect(check_peft_targets, cfg)
    problems += _collect(check_data, cfg)
    problems += _collect(check_training_arguments, cfg, plan)
    problems += _collect(check_output_dir, cfg.training_args["output_dir"])
    problems += _collect(check_disk_space, cfg)
    if resume_from is not None:
        problems += _collect(check_resume_target, cfg, plan, resume_from, fingerprint)
    if problems:
        raise UserError(problems)


# --- the entry point: batch plan, resume target, pre-flight, output dir reuse ----------------------------------------


def check_batch_sizes(cfg) -> BatchPlan:
    """The batch plan for this launch; impossible arithmetic is a user error (also checked by `validate`)."""
    batch = cfg.batchsize_conf
    return plan_batches(
        batch.total_train_batch_size,
        batch.max_per_device_train_batch_size,
        num_processes(),
        batch.per_device_eval_batch_size,
    )


def check_before_loading(cfg) -> tuple[BatchPlan, str | None, str]:
    """Everything that needs no model, every problem at once: batch arithmetic, the checkpoint to resume from, and
    the pre-flight (output dir, disk, data, model source, resume compatibility). Shared with `finetuning validate`.
    Returns the batch plan, the checkpoint to resume from and the data fingerprint.
    """
    plan = check_batch_sizes(cfg)  # the pre-flight compares a resume target against this plan
    fingerprint = recipe_data_fingerprint(cfg)  # ... and against this
    problems: list[str] = []
    resume_from = None
    try:
        resume_from = resolve_resume(cfg.run_conf.resume_from_checkpoint, cfg.training_args["output_dir"])
    except UserError as error:
        problems += error.problems
    try:
        run_preflight(cfg, plan, resume_from, fingerprint)
    except UserError as error:
        problems += error.problems
    problems += _output_dir_reuse_problems(cfg, resume_from, fingerprint)
    if problems:
        raise UserError(problems)
    return plan, resume_from, fingerprint


def training_length(cfg) -> dict:
    """The settings that decide how many steps a run trains (with the data and the batch size): a finished run
    trained with other values is not finished for this config."""
    return {
        "max_steps": cfg.training_args.get("max_steps", -1),
        "num_train_epochs": cfg.overrides.num_train_epochs or cfg.training_args.get("num_train_epochs", 3.0),
    }


def _output_dir_reuse_problems(cfg, resume_from: str | None, fingerprint: str) -> list[str]:
    """A finished run is not trained again (RunAlreadyFinished); a fresh start never silently deletes another
    run's checkpoints or replaces its final model."""
    output_dir = resolve_user_path(cfg.training_args["output_dir"])
    final_name = cfg.run_conf.final_checkpoint_name
    if cfg.run_conf.resume_from_checkpoint is not False:
        finished = finished_run(
            output_dir / final_name, fingerprint, training_length(cfg), cfg.batchsize_conf.total_train_batch_size
        )
        if finished is not None:
            raise RunAlreadyFinished(finished)
    if resume_from is not None:
        return []
    problem = fresh_start_problem(output_dir, final_name, overwrite=cfg.overwrite_output_dir)
    return [problem] if problem else []
