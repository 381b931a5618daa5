"""How much disk one checkpoint will take, estimated before any model loads (the pre-flight compares it with the free
space of the output dir's file system, train/output_checks.py).

Read from the model directory alone: the weight files' sizes and safetensors headers (shapes, no tensor data), and
config.json's dtype; an adapter's size from the shapes of the layers it wraps. The estimate errs on the large side.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..paths import resolve_user_path
from .checkpoints import read_json_object

logger = logging.getLogger(__name__)

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


def format_bytes(size: float) -> str:
    if size >= GiB:
        return f"{size / GiB:.1f} GiB"
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    return f"{size / 1024:.1f} KiB"


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
    model_config = read_json_object(model_dir / "config.json") or {}
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
    index = read_json_object(snapshot / "model.safetensors.index.json")
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
