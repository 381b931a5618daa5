"""Load the base model (dtype, device map, quantization), grow its vocabulary, and wrap it with a PEFT adapter."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UserError
from ..paths import resolve_user_path
from ..train.distributed import local_rank
from .config_overrides import ROPE_KEYS, config_override_kwargs, config_override_problems

logger = logging.getLogger(__name__)

# ModelArguments fields that are ours, not from_pretrained keywords under the same name.
_RENAMED = {"torch_dtype": "dtype"}
# Seed-000 ModelArguments that transformers 5 no longer accepts (downloads always resume, loading is always
# low-memory, remote code follows `revision`): accepted in configs, not passed on.
_OBSOLETE = {"resume_download", "low_cpu_mem_usage", "offload_state_dict", "code_revision"}


class ModelSetupError(UserError):
    """A model-side combination the engine refuses (reported as a user error)."""


def looks_local(name_or_path: str) -> bool:
    """A path (absolute, ./, ../, ~, or existing) rather than a hub id (org/name)."""
    return name_or_path.startswith(("/", "./", "../", "~")) or Path(name_or_path).exists()


def base_model_reference(name_or_path: str) -> str:
    """How a saved adapter names its base: a local path made absolute (relative to the working directory, as the
    config meant it), so the adapter loads from any directory; a hub id as given."""
    return str(resolve_user_path(name_or_path)) if looks_local(name_or_path) else name_or_path


def shown_source(name_or_path: str) -> str:
    """How error messages name a model source: a local path resolved against the working directory (as the Silogen
    engine resolves relative paths), a hub id quoted as given."""
    if looks_local(name_or_path):
        return str(resolve_user_path(name_or_path))
    return repr(name_or_path)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (read now: tests and launchers set it after import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def similar_local_dir(path: Path) -> Path | None:
    """A directory beside `path` with a close name (`tiny-bse` → `tiny-base`): a typo, not a hub id."""
    from ..errors import closest

    parent = path.parent
    try:
        names = [entry.name for entry in parent.iterdir() if entry.is_dir()] if parent.is_dir() else []
    except OSError:
        return None
    # stricter than a did-you-mean: a match turns what could be a hub id into a "no such directory" error
    match = closest(path.name, names, cutoff=0.75)
    return parent / match if match is not None else None


def in_hub_cache(repo_id: str, filename: str, model_args=None) -> bool | None:
    """Whether the hub repo's `filename` is in the local HF cache (no network); None when `repo_id` is no valid id."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = getattr(model_args, "cache_dir", None)
    revision = getattr(model_args, "revision", None)
    try:
        return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str)
    except ValueError:  # HFValidationError: not a repo id at all
        return None


def model_source_problems(
    name_or_path: str, key: str = "run_conf.model", model_args=None, marker: str = "config.json"
) -> list[str]:
    """A source that is not a local directory: a missing local path is an error; a name is a hub id, which offline
    (HF_HUB_OFFLINE) must already be in the local cache (`marker` is the file looked up there); online it is fetched
    (logged). A similar local directory is suggested either way: a mistyped path would otherwise mean minutes of
    download retries."""
    path = resolve_user_path(name_or_path)
    if path.exists():
        return []
    similar = similar_local_dir(path)
    hint = f"; did you mean {similar}?" if similar else ""
    if looks_local(name_or_path):
        return [f"{key}: {path}: not found (a local path; hub ids look like 'org/name'){hint}"]
    subfolder = getattr(model_args, "subfolder", None) or ""
    cached = in_hub_cache(name_or_path, f"{subfolder}/{marker}" if subfolder else marker, model_args)
    if cached is None:
        return [f"{key}: {name_or_path!r}: neither a local directory ({path} does not exist) nor a valid hub id{hint}"]
    if cached:
        return []
    if hub_offline():
        return [
            f"{key}: {name_or_path!r}: not a local directory ({path} does not exist) and not in the local Hugging "
            f"Face cache, and HF_HUB_OFFLINE is set, so it cannot be fetched from the Hub{hint}"
        ]
    logger.warning("%s: %r is not a local directory: it will be fetched from the Hub%s", key, name_or_path, hint)
    return []


def adapter_source_problems(name_or_path: str, key: str = "peft_conf.name_or_path", model_args=None) -> list[str]:
    """A model source check (model_source_problems) that also wants a PEFT adapter directory when the path exists."""
    problems = model_source_problems(name_or_path, key, model_args, marker="adapter_config.json")
    path = Path(name_or_path).expanduser()
    if not problems and path.is_dir() and not (path / "adapter_config.json").is_file():
        return [f"{key}: {path.resolve()}: no adapter_config.json there (not a PEFT adapter directory)"]
    return problems


def _pickle_hint(found: str, args_key: str) -> str:
    return (
        f"only pickle weights ({found}), which can run code when loaded; convert them to safetensors, or set "
        f"`{args_key}.use_safetensors: false` to load them anyway"
    )


def pickle_weights_problems(
    name_or_path: str, model_args, key: str = "run_conf.model", args_key: str | None = None
) -> list[str]:
    """A local model directory with pickle weights (*.bin) and no safetensors is refused unless
    `model_args.use_safetensors` is false: safetensors is the default for loading (see from_pretrained_kwargs)."""
    args_key = args_key or key.rsplit(".", 1)[0] + ".model_args"
    if model_args.use_safetensors is False:
        return []
    path = resolve_user_path(name_or_path) / (model_args.subfolder or "")
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return []
    pickles = sorted(p.name for p in path.glob("*.bin") if p.name.startswith(("pytorch_model", "model")))
    if not pickles:
        return []
    found = ", ".join(pickles[:2]) + (", ..." if len(pickles) > 2 else "")
    return [f"{key}: {path}: " + _pickle_hint(found, args_key)]


def pickle_adapter_problems(name_or_path: str, model_args, key: str, args_key: str) -> list[str]:
    """The same rule for a local adapter directory (adapter_model.bin without adapter_model.safetensors)."""
    path = resolve_user_path(name_or_path)
    if model_args.use_safetensors is False or not path.is_dir():
        return []
    if (path / "adapter_model.bin").is_file() and not (path / "adapter_model.safetensors").is_file():
        return [f"{key}: {path}: " + _pickle_hint("adapter_model.bin", args_key)]
    return []


def check_model_sources(run_conf, peft_conf=None) -> list[str]:
    """Problems found before any download or load: a plainly missing model / tokenizer / adapter path, a local
    model or adapter with only pickle weights while safetensors are required, config_overrides the config refuses."""
    args = run_conf.model_args
    problems = model_source_problems(run_conf.model, "run_conf.model", args) + pickle_weights_problems(
        run_conf.model, args
    )
    if not problems:
        problems += config_override_problems(run_conf)
    if run_conf.tokenizer:
        problems += model_source_problems(run_conf.tokenizer, "run_conf.tokenizer", args, "tokenizer_config.json")
    if peft_conf is not None and peft_conf.peft_type == "PRETRAINED_PEFT":
        problems += adapter_source_problems(peft_conf.name_or_path, model_args=args)
        problems += pickle_adapter_problems(
            peft_conf.name_or_path, args, "peft_conf.name_or_path", "run_conf.model_args"
        )
    return problems


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def default_device_map(num_processes: int, deepspeed: bool = False):
    """Silogen semantics: one process → "auto"; several → each process owns its local device. CPU, or DeepSpeed
    (which places, and under ZeRO-3 partitions, the weights itself) → no map."""
    if deepspeed or not has_accelerator():
        return None
    if num_processes > 1:
        return {"": local_rank()}
    return "auto"


def from_pretrained_kwargs(model_args, num_processes: int, deepspeed: bool = False) -> dict:
    """ModelArguments → from_pretrained keywords (unset values left to transformers, legacy names translated).

    Safe defaults, always explicit: trust_remote_code false unless set, and use_safetensors true unless set (a
    pickle-only checkpoint is refused; `model_args.use_safetensors: false` allows it)."""
    kwargs = {}
    for key, value in model_args.model_dump().items():
        if key in _OBSOLETE:
            if key in model_args.model_fields_set:
                logger.info("run_conf.model_args.%s: not used by transformers 5 (ignored)", key)
            continue
        if value is not None:
            kwargs[_RENAMED.get(key, key)] = value
    kwargs["trust_remote_code"] = bool(model_args.trust_remote_code)
    kwargs.setdefault("use_safetensors", True)
    if kwargs.get("device_map") is None:
        device_map = default_device_map(num_processes, deepspeed)
        if device_map is not None:
            kwargs["device_map"] = device_map
        else:
            kwargs.pop("device_map", None)
    return kwargs


def bitsandbytes_config(quant_conf, run_conf=None, fsdp: bool = False):
    """quant_conf → transformers.BitsAndBytesConfig, or None for no quantization. Under FSDP (`fsdp`), 4-bit
    weights are stored in the dtype of the other parameters unless quant_conf says (train/fsdp.fsdp_quant_storage).
    """
    if quant_conf.quantization_type != "bits-and-bytes":
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelSetupError(
            "quant_conf: bits-and-bytes quantization needs the bitsandbytes package: pip install bitsandbytes"
        )
    from transformers import BitsAndBytesConfig

    options = quant_conf.model_dump(exclude={"quantization_type"}, exclude_none=True)
    if fsdp and run_conf is not None and "bnb_4bit_quant_storage" not in options:
        from ..train.fsdp import fsdp_quant_storage

        if storage := fsdp_quant_storage(run_conf, quant_conf):
            options["bnb_4bit_quant_storage"] = storage
            logger.info("quant_conf.bnb_4bit_quant_storage: %s (FSDP shards 4-bit weights with the others)", storage)
    return BitsAndBytesConfig(**options)


def load_model(
    run_conf, quant_conf, num_processes: int, key: str = "run_conf.model", fsdp: bool = False, deepspeed: bool = False
):
    """The base model per `run_conf`; `key` names the config section in errors (the generate tool: model_conf);
    `fsdp`: the run shards the model with FSDP (a 4-bit model's storage dtype follows); `deepspeed`: DeepSpeed
    places the weights (no default device_map)."""
    from transformers import AutoModelForCausalLM

    args_key = key.rsplit(".", 1)[0] + ".model_args"
    problems = pickle_weights_problems(run_conf.model, run_conf.model_args, key, args_key)
    if problems:
        raise ModelSetupError(problems)
    kwargs = from_pretrained_kwargs(run_conf.model_args, num_processes, deepspeed)
    # a rope mapping in model_args (seed-000 configs) would replace the rope parameters: merged like an override
    if rope := {name: kwargs.pop(name) for name in ROPE_KEYS if isinstance(kwargs.get(name), dict)}:
        kwargs.update(config_override_kwargs(run_conf, rope, args_key))
    if overrides := getattr(run_conf, "config_overrides", None):  # the generate tool's model_conf has none
        kwargs.update(config_override_kwargs(run_conf, overrides))
    quantization = bitsandbytes_config(quant_conf, run_conf, fsdp)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    try:
        return AutoModelForCausalLM.from_pretrained(run_conf.model, **kwargs)
    except (OSError, ValueError) as error:
        message = f"{key}: could not load a model from {shown_source(run_conf.model)}: {error}"
        if run_conf.model_args.use_safetensors is None and "safetensors" in str(error):
            message += f"; if it only has pickle weights (*.bin), set `{args_key}.use_safetensors: false` to allow them"
        raise ModelSetupError(message) from None
    except TypeError as error:  # an unknown keyword reached the model class
        raise ModelSetupError(f"{args_key}: {error}") from None


QUANTIZED_RESIZE_REFUSAL = (
    "the chat template or run_conf.special_tokens / added_tokens add tokens to the vocabulary, which needs resizing "
    "the embeddings, and a quantized model cannot be resized: train without quant_conf first, or use a template and "
    "tokens the tokenizer already has"
)


def model_config(run_conf):
    """The model's config (config.json alone, no weights) as from_pretrained reads it; None when it cannot be read."""
    from transformers import AutoConfig

    args = run_conf.model_args
    options = {
        "revision": args.revision,
        "cache_dir": args.cache_dir,
        "subfolder": args.subfolder or "",
        "token": args.token,
    }
    try:
        return AutoConfig.from_pretrained(run_conf.model, trust_remote_code=args.trust_remote_code, **options)
    except (OSError, ValueError):
        return None


def configured_vocab_size(run_conf) -> int | None:
    """The model's embedding rows from its config.json alone (no weights loaded); None when it cannot be read."""
    config = model_config(run_conf)
    return getattr(config.get_text_config(), "vocab_size", None) if config is not None else None


def check_vocabulary_fits(run_conf, tokenizer, quantized: bool) -> None:
    """Before the (slow) load of a quantized model: refuse at once a template whose tokens would need a resize."""
    rows = configured_vocab_size(run_conf) if quantized else None
    if rows is not None and len(tokenizer) > rows:
        raise ModelSetupError(QUANTIZED_RESIZE_REFUSAL)


def expand_vocabulary(model, tokenizer, quantized: bool) -> bool:
    """Grow the embeddings when the template added tokens; new rows start at the mean embedding."""
    if len(tokenizer) <= model.get_input_embeddings().weight.shape[0]:
        return False
    if quantized:
        raise ModelSetupError(QUANTIZED_RESIZE_REFUSAL)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    logger.info("resized token embeddings to %d", len(tokenizer))
    return True


def _embedding_module_names(model) -> list[str]:
    """Names of the input embedding and output head modules, as PEFT's modules_to_save wants them."""
    wanted = {id(model.get_input_embeddings()): None, id(model.get_output_embeddings()): None}
    names = []
    for name, module in model.named_modules():
        if id(module) in wanted and name:
            names.append(name.rsplit(".", 1)[-1])
    return sorted(set(names))


def apply_peft(model, peft_conf, vocab_expanded: bool, quantized: bool):
    """Wrap the model per `peft_conf`; returns the model unchanged for NO_PEFT."""
    if peft_conf.peft_type == "NO_PEFT":
        return model
    import peft

    if quantized:
        model = peft.prepare_model_for_kbit_training(model)
    if peft_conf.peft_type == "PRETRAINED_PEFT":
        try:
            return peft.PeftModel.from_pretrained(model, peft_conf.name_or_path, is_trainable=True)
        except (OSError, ValueError) as error:
            source = shown_source(peft_conf.name_or_path)
            raise ModelSetupError(
                f"peft_conf.name_or_path: could not load the adapter from {source}: {error}"
            ) from None
    config_dict = {"peft_type": peft_conf.peft_type, "task_type": peft_conf.task_type, **peft_conf.peft_kwargs}
    if vocab_expanded:
        # New token rows must be trained and saved with the adapter, or the new tokens stay random at inference.
        modules = list(config_dict.get("modules_to_save") or [])
        config_dict["modules_to_save"] = sorted(set(modules) | set(_embedding_module_names(model)))
    try:
        return peft.get_peft_model(model, peft.get_peft_config(config_dict))
    except ValueError as error:  # e.g. target_modules that the model does not have
        raise ModelSetupError(f"peft_conf.peft_kwargs: {error}") from None
