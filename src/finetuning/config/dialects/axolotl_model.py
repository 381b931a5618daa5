"""axolotl's model keys: which model and tokenizer, their loading options, precision and attention.

Precision follows axolotl's `resolve_dtype`: `bf16: auto` (the default) is bf16 where the device supports it, and the
weights load in the dtype training uses (bf16 → bfloat16; fp16 or 8-bit loading → float16; otherwise float32). Here
"the device supports it" is the translation context's CUDA; without it the run is fp32 (axolotl would try fp16, which
a CPU cannot run). Attention: axolotl's `attn_implementation` or its older flags; flash attention without CUDA or
without the flash_attn package becomes sdpa, with a notice, so a config written for a GPU validates and runs anywhere.
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    AxolotlBuilder,
    as_bool,
    as_mapping,
    as_str,
    as_strs,
    noticed_when,
    one_of,
    option,
    renamed_as,
    set_from,
)
from finetuning.config.dialects.builder import Key, section_key

DERIVED_MODEL = "the architecture is read from the model's config.json"
# axolotl's older attention flags, in its order of precedence, and the implementation each selects
ATTENTION_FLAGS = {
    "flex_attention": "flex_attention",
    "flash_attention": "flash_attention_2",
    "sdp_attention": "sdpa",
    "eager_attention": "eager",
}
FLASH = ("flash_attention_2", "flash_attention_3")
ATTENTION_REFUSED = {
    "xformers": "xformers is not supported; use flash_attention or sdp_attention",
    "sage": "SageAttention is not supported; use flash_attention or sdp_attention",
    "fp8": "fp8 attention is not supported; use flash_attention or sdp_attention",
}


def _base_model_config(b: AxolotlBuilder, path: str, value: Any) -> None:
    if value != b.get("base_model"):
        b.problem(
            path,
            "the model's config.json is read from base_model; a config from another path is not supported "
            "(change single settings with overrides_of_model_config)",
        )


def _model_class(suffixes: tuple[str, ...], auto: str, what: str):
    def check(b: AxolotlBuilder, path: str, value: Any) -> None:
        if value == auto:
            return
        if value.endswith(suffixes):
            b.notice(path, f"{value}: loaded with {auto}, which picks the class from the checkpoint's config")
        else:
            classes = " / ".join(f"*{suffix}" for suffix in suffixes)
            b.problem(path, f"{value!r}: {what} load with {auto} (or name a {classes} class)")

    return check


def _special_tokens(b: AxolotlBuilder, path: str, value: Any) -> None:
    b.maps("run_conf.special_tokens", path)


# --- precision ------------------------------------------------------------------------------------------------------


def build_precision(b: AxolotlBuilder) -> None:
    """bf16 / fp16 / tf32 → the trainer's mixed precision, and the dtype the weights load in (axolotl's rules)."""
    bf16 = b.value("bf16", "auto")
    fp16 = b.value("fp16", False)
    if bf16 == "auto":
        bf16 = b.context.cuda and not fp16
        if b.given("bf16"):
            b.notice("bf16", "auto: bf16 on this CUDA device" if bf16 else _auto_without_bf16(fp16, b.context.cuda))
    if bf16 is True:
        set_from(b, "training_args.bf16", True, "bf16")
    elif bf16 == "full":  # axolotl: bf16 weights, evaluation in bf16 too, no autocast
        b.set("training_args.bf16_full_eval", True, source="bf16")
    elif fp16:
        b.set("training_args.fp16", True, source="fp16")
    _tf32(b)
    if bf16 or b.value("bfloat16"):
        dtype, source = "bfloat16", ("bf16", "bfloat16")
    elif b.value("load_in_8bit") or fp16 or b.value("float16"):
        dtype, source = "float16", ("fp16", "float16", "load_in_8bit")
    else:
        dtype, source = "float32", ("bf16", "float32")
    set_from(b, "run_conf.model_args.torch_dtype", dtype, *source)


def _auto_without_bf16(fp16: bool, cuda: bool) -> str:
    if fp16:
        return "auto with fp16: true → fp16 mixed precision"
    return "auto: no CUDA device here, training in fp32" if not cuda else "auto: fp32"


def _tf32(b: AxolotlBuilder) -> None:
    tf32 = b.value("tf32", "auto")  # axolotl turns TF32 on only for `tf32: true`; auto leaves torch's default
    if tf32 is True and b.context.cuda:
        b.set("training_args.tf32", True, source="tf32")
    elif tf32 is True:
        b.notice("tf32", "no CUDA device here: TF32 (a CUDA matmul mode) does not apply")
    elif tf32 is False and b.context.cuda:
        b.set("training_args.tf32", False, source="tf32")


# --- attention ------------------------------------------------------------------------------------------------------


def build_attention(b: AxolotlBuilder) -> None:
    """`attn_implementation`, else the first older flag set → `run_conf.model_args.attn_implementation`."""
    source, implementation = "attn_implementation", b.value("attn_implementation")
    if implementation is None:
        flag = next((flag for flag in ATTENTION_FLAGS if b.value(flag)), None)
        if flag is None:
            return
        source, implementation = flag, ATTENTION_FLAGS[flag]
    if implementation in ATTENTION_REFUSED:
        b.problem(source, ATTENTION_REFUSED[implementation])
        return
    if implementation in FLASH and not b.context.cuda:
        b.notice(source, f"no CUDA device here: sdpa attention instead of {implementation}")
        implementation = "sdpa"
    elif implementation in FLASH and not b.context.flash_attn:
        b.notice(source, f"the flash_attn package is not installed: sdpa attention instead of {implementation}")
        implementation = "sdpa"
    b.set("run_conf.model_args.attn_implementation", implementation, source=source)


def _fusion(name: str) -> Key:
    return noticed_when(
        name,
        "a flash_attn kernel fusion (speed only): not applied, training computes the same without it",
    )


def _refused_flag(name: str, why: str) -> Key:
    return Key(name, "refused", why)


MODEL_KEYS: tuple[Key, ...] = (
    renamed_as("base_model", "run_conf.model", as_str, "a local path or a Hugging Face Hub id"),
    option(
        "base_model_config",
        "accepted when it is base_model; another path is refused (use overrides_of_model_config)",
        as_str,
        then=_base_model_config,
    ),
    renamed_as("tokenizer_config", "run_conf.tokenizer", as_str),
    renamed_as("tokenizer_use_fast", "run_conf.use_fast_tokenizer", as_bool),
    renamed_as("revision_of_model", "run_conf.model_args.revision", as_str),
    option(
        "model_type",
        "AutoModelForCausalLM, or a *ForCausalLM class (notice: AutoModelForCausalLM picks it from the checkpoint); "
        "other classes refused",
        as_str,
        then=_model_class(("ForCausalLM",), "AutoModelForCausalLM", "only causal language models train here; they"),
    ),
    option(
        "tokenizer_type",
        "AutoTokenizer, or a *Tokenizer / *TokenizerFast class (notice: AutoTokenizer picks it); others refused",
        as_str,
        then=_model_class(("Tokenizer", "TokenizerFast"), "AutoTokenizer", "tokenizers"),
    ),
    renamed_as("trust_remote_code", "run_conf.model_args.trust_remote_code", as_bool),
    renamed_as(
        "overrides_of_model_config",
        "run_conf.config_overrides",
        as_mapping,
        "model config attributes replaced before loading, e.g. rope_scaling",
    ),
    *(
        Key(f"is_{family}_derived_model", "accepted", DERIVED_MODEL)
        for family in ("falcon", "llama", "qwen", "mistral")
    ),
    section_key("special_tokens", _special_tokens),
    *(
        renamed_as(f"special_tokens.{name}", f"run_conf.special_tokens.{name}", as_str, "added when new")
        for name in ("pad_token", "eos_token", "bos_token", "unk_token")
    ),
    Key(
        "special_tokens.additional_special_tokens",
        "refused",
        "additional special tokens are not supported; list them under tokens (added as whole tokens)",
    ),
    renamed_as("tokens", "run_conf.added_tokens", as_strs, "added to the tokenizer when new"),
    renamed_as("device_map", "run_conf.model_args.device_map"),
    renamed_as("max_memory", "run_conf.model_args.max_memory", as_mapping),
    Key(
        "gpu_memory_limit",
        "refused",
        "the number of GPUs is known only when the model loads; cap each device with max_memory, e.g. "
        "{0: 20GiB, cpu: 256GiB}",
    ),
    renamed_as("low_cpu_mem_usage", "run_conf.model_args.low_cpu_mem_usage", as_bool),
    noticed_when(
        "lora_on_cpu",
        "the adapter is created on the model's device; merging an adapter afterwards (finetuning merge) runs on "
        "the CPU anyway",
    ),
    # precision (build_precision)
    option(
        "bf16",
        "`training_args.bf16` and weights in bfloat16; auto (the default): bf16 with CUDA, fp32 without (notice); "
        "full: `bf16_full_eval` with bfloat16 weights",
        one_of("auto", True, False, "full"),
    ),
    option("fp16", "`training_args.fp16` and weights in float16 (when bf16 is not on)", as_bool),
    option(
        "tf32",
        "`training_args.tf32` (true; without CUDA: a notice, it does not apply); auto leaves torch's default",
        one_of("auto", True, False),
    ),
    option("bfloat16", "weights in bfloat16 without mixed precision (`run_conf.model_args.torch_dtype`)", as_bool),
    option("float16", "weights in float16 without mixed precision (`run_conf.model_args.torch_dtype`)", as_bool),
    option("float32", "weights in float32 (`run_conf.model_args.torch_dtype`, the default without bf16)", as_bool),
    # attention (build_attention)
    option(
        "attn_implementation",
        "`run_conf.model_args.attn_implementation`; flash_attention_2/3 without CUDA or flash_attn: sdpa (notice); "
        "xformers, sage and fp8 refused",
        as_str,
    ),
    *(
        option(
            flag,
            f"`run_conf.model_args.attn_implementation: {implementation}` (when attn_implementation is unset)",
            as_bool,
        )
        for flag, implementation in ATTENTION_FLAGS.items()
    ),
    _refused_flag("xformers_attention", ATTENTION_REFUSED["xformers"]),
    _refused_flag("sage_attention", ATTENTION_REFUSED["sage"]),
    _refused_flag(
        "flash_optimum",
        "BetterTransformer (optimum) is retired, its kernels are torch's sdpa now; use sdp_attention",
    ),
    _refused_flag(
        "s2_attention",
        "shifted sparse attention (LongLoRA) is not supported; train at the full sequence_len with flash_attention",
    ),
    *(_fusion(f"flash_attn_{name}") for name in ("cross_entropy", "rms_norm", "fuse_qkv", "fuse_mlp")),
)
