"""The sectioned dialect's `model` and `fine_tuning` sections: the model, its loading, and the training method.

The method decides what the other keys mean: `qlora` needs a 4-bit model ("QLoRA requires 4-bit quantization", as
the seed's best practices say), `full` cannot train a quantized model, and `spectrum` trains the selected weight
matrices in full precision, so it loads the model unquantized (the seed's own Spectrum template asks for 4 bits: that
key is then not used, with a notice, rather than refusing the seed's template). Keys of a method not chosen (a
`lora` section with `method: full`) are not used, with a notice.
"""

from __future__ import annotations

from typing import Any

from finetuning.config.dialects.axolotl_common import (
    MISSING,
    AxolotlBuilder,
    as_bool,
    as_float,
    as_int,
    as_str,
    as_strs,
    one_of,
    option,
    renamed_as,
    unused,
)
from finetuning.config.dialects.builder import Key, section_key

METHODS = ("full", "lora", "qlora", "spectrum")
PRECISIONS = ("no", "fp16", "bf16")
FLASH = "flash_attention_2"
LORA = "fine_tuning.lora"
QUANT = "fine_tuning.quantization"
SPECTRUM = "fine_tuning.spectrum"
LORA_KWARGS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def _positive_int(b: AxolotlBuilder, path: str, value: Any) -> Any:
    return as_int(b, path, value, minimum=1)


def _threshold(b: AxolotlBuilder, path: str, value: Any) -> Any:
    number = as_float(b, path, value)
    if not isinstance(number, (int, float)) or 0 <= number < 1:
        return number
    b.problem(path, f"must be at least 0 and below 1 (the share of matrices left frozen), got {number}")
    return MISSING


def _layers(b: AxolotlBuilder, path: str, value: Any) -> Any:
    if value == "auto" or (
        isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ):
        return value
    b.problem(path, f'must be "auto" or a list of layer indices, got {value!r}')
    return MISSING


MODEL_KEYS: tuple[Key, ...] = (
    section_key("model"),
    renamed_as("model.base_model", "run_conf.model", as_str, "required: a Hugging Face model id or a local path"),
    renamed_as("model.tokenizer", "run_conf.tokenizer", as_str, "default: the model's own"),
    option("model.load_in_8bit", "`quant_conf` bits-and-bytes `load_in_8bit`", as_bool),
    option("model.load_in_4bit", "`quant_conf` bits-and-bytes `load_in_4bit` (with fine_tuning.quantization)", as_bool),
    renamed_as(
        "model.trust_remote_code",
        "run_conf.model_args.trust_remote_code",
        as_bool,
        "default false here, not true as the seed's table says: a model repository's code runs only when asked",
    ),
    option(
        "model.use_flash_attention",
        "`run_conf.model_args.attn_implementation: flash_attention_2` (sdpa, with a notice, without CUDA or the "
        "flash_attn package; false: sdpa)",
        as_bool,
    ),
    renamed_as(
        "model.use_liger_kernels",
        "training_args.use_liger_kernel",
        as_bool,
        "Liger's fused kernels, which need a CUDA GPU: a config error otherwise",
    ),
    section_key("fine_tuning"),
    option(
        "fine_tuning.method",
        "full → `peft_conf.peft_type: NO_PEFT`; lora → `LORA`; qlora → `LORA` on a 4-bit model (a config error "
        "without 4-bit quantization); spectrum → `NO_PEFT` with the top-level `spectrum` section",
        one_of(*METHODS),
    ),
    section_key(LORA),
    option(f"{LORA}.r", "`peft_conf.peft_kwargs.r`", _positive_int),
    option(f"{LORA}.alpha", "`peft_conf.peft_kwargs.lora_alpha`", as_float),
    option(f"{LORA}.dropout", "`peft_conf.peft_kwargs.lora_dropout`", as_float),
    option(f"{LORA}.target_modules", "`peft_conf.peft_kwargs.target_modules`", as_strs),
    option(f"{LORA}.bias", "`peft_conf.peft_kwargs.bias`", one_of("none", "all", "lora_only")),
    option(f"{LORA}.task_type", "`peft_conf.task_type`", as_str),
    section_key(SPECTRUM),
    option(
        f"{SPECTRUM}.snr_threshold",
        "`spectrum.top_percent` = (1 − snr_threshold) × 100: the share of matrices (per module type) with the "
        "highest signal-to-noise ratio that is trained (0.5 → the top 50 %; higher = fewer)",
        _threshold,
    ),
    option(
        f"{SPECTRUM}.layers_to_finetune",
        '`spectrum.layers` ("auto": chosen by SNR; a list: exactly those layer indices)',
        _layers,
    ),
    section_key(QUANT),
    option(f"{QUANT}.bits", "4 → `quant_conf.load_in_4bit`, 8 → `quant_conf.load_in_8bit`", one_of(4, 8)),
    option(
        f"{QUANT}.bnb_4bit_compute_dtype",
        "`quant_conf.bnb_4bit_compute_dtype` (default: the training dtype; float32, with a notice, without CUDA)",
        one_of("bfloat16", "float16", "float32"),
    ),
    option(f"{QUANT}.bnb_4bit_quant_type", "`quant_conf.bnb_4bit_quant_type`", one_of("nf4", "fp4")),
    option(f"{QUANT}.bnb_4bit_use_double_quant", "`quant_conf.bnb_4bit_use_double_quant`", as_bool),
)


def build_model(b: AxolotlBuilder) -> None:
    """Attention: flash attention needs CUDA and the flash_attn package, else sdpa (as the axolotl dialect)."""
    path = "model.use_flash_attention"
    if not b.given(path):
        return
    implementation = FLASH if b.value(path) else "sdpa"
    if implementation == FLASH and not b.context.cuda:
        b.notice(path, f"no CUDA device here: sdpa attention instead of {FLASH}")
        implementation = "sdpa"
    elif implementation == FLASH and not b.context.flash_attn:
        b.notice(path, f"the flash_attn package is not installed: sdpa attention instead of {FLASH}")
        implementation = "sdpa"
    b.set("run_conf.model_args.attn_implementation", implementation, source=path)


def quantization_bits(b: AxolotlBuilder) -> tuple[int | None, str | None]:
    """The bits the model loads in and the key that asked for them (a contradiction is a problem, and None)."""
    asked = [(4, "model.load_in_4bit"), (8, "model.load_in_8bit")]
    wanted = [(bits, path) for bits, path in asked if b.value(path)]
    if b.given(f"{QUANT}.bits"):
        wanted.append((b.value(f"{QUANT}.bits"), f"{QUANT}.bits"))
    if len({bits for bits, _ in wanted}) > 1:
        b.problem(wanted[-1][1], f"asks for {wanted[-1][0]} bits, and {wanted[0][1]} for {wanted[0][0]}; keep one")
        return None, None
    return (wanted[0][0], wanted[0][1]) if wanted else (None, None)


def build_method(b: AxolotlBuilder, dtype: str) -> None:
    """The method → peft_conf, quant_conf and spectrum, with the combinations that cannot train refused."""
    method = b.value("fine_tuning.method")
    if method is None:
        if not b.has("fine_tuning.method"):
            b.problem("fine_tuning.method", f"required key is missing (one of {', '.join(METHODS)})")
        return
    bits, bits_path = quantization_bits(b)
    quant_paths = [f"{QUANT}.{key}" for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_type")]
    quant_paths.append(f"{QUANT}.bnb_4bit_use_double_quant")
    if method == "qlora" and bits != 4:
        b.problem(
            "fine_tuning.method",
            "qlora: QLoRA requires 4-bit quantization; set model.load_in_4bit: true (or fine_tuning.quantization."
            "bits: 4), or use method lora" + (f" (got {bits} bits from {bits_path})" if bits else ""),
        )
    elif method == "full" and bits is not None:
        b.problem(
            bits_path,
            f"full fine-tuning cannot train a {bits}-bit quantized model; drop it, or use method qlora (4 bits) or lora",
        )
    elif method == "spectrum" and bits is not None:
        b.notice(
            bits_path,
            "not used with method spectrum: Spectrum trains the selected weight matrices themselves, in full "
            "precision, so the model loads unquantized (its memory need is that of the model in the training dtype)",
        )
        bits = None
    if bits is not None:
        _quantization(b, bits, bits_path, dtype)
    else:
        unused(b, [*quant_paths, f"{QUANT}.bits"], "the model is not quantized")
    if method in ("lora", "qlora"):
        _lora(b)
    else:
        unused(b, [f"{LORA}.{key}" for key in (*LORA_KWARGS, "bias", "task_type")], f"method {method} has no adapter")
        b.set("peft_conf", {"peft_type": "NO_PEFT"}, source="fine_tuning.method")
    if method == "spectrum":
        _spectrum(b)
    else:
        unused(b, [f"{SPECTRUM}.snr_threshold", f"{SPECTRUM}.layers_to_finetune"], f"method is {method}")


def _quantization(b: AxolotlBuilder, bits: int, source: str, dtype: str) -> None:
    b.set("quant_conf.quantization_type", "bits-and-bytes", source=source)
    b.set(f"quant_conf.load_in_{bits}bit", True, source=source)
    if bits == 8:
        unused(b, [f"{QUANT}.{key}" for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_type")], "8-bit model")
        unused(b, [f"{QUANT}.bnb_4bit_use_double_quant"], "8-bit model")
        return
    compute = b.value(f"{QUANT}.bnb_4bit_compute_dtype", dtype)
    if compute != "float32" and not b.context.cuda:
        b.notice(f"{QUANT}.bnb_4bit_compute_dtype", f"{compute}: no CUDA device here, 4-bit layers compute in float32")
        compute = "float32"
    b.set("quant_conf.bnb_4bit_compute_dtype", compute, source=f"{QUANT}.bnb_4bit_compute_dtype")
    for key in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant"):
        if b.given(f"{QUANT}.{key}"):
            b.set(f"quant_conf.{key}", b.value(f"{QUANT}.{key}"), source=f"{QUANT}.{key}")


def _lora(b: AxolotlBuilder) -> None:
    b.set("peft_conf.peft_type", "LORA", source="fine_tuning.method")
    b.set("peft_conf.task_type", b.value(f"{LORA}.task_type", "CAUSAL_LM"), source=f"{LORA}.task_type")
    b.maps("peft_conf.peft_kwargs", LORA)
    kwargs = {**LORA_KWARGS, "bias": "bias"}
    for key, native in kwargs.items():
        if b.given(f"{LORA}.{key}"):
            b.set(f"peft_conf.peft_kwargs.{native}", b.value(f"{LORA}.{key}"), source=f"{LORA}.{key}")


def _spectrum(b: AxolotlBuilder) -> None:
    b.set("spectrum", {}, source=SPECTRUM if b.has(SPECTRUM) else "fine_tuning.method")
    threshold = b.value(f"{SPECTRUM}.snr_threshold")
    if threshold is not None:
        b.set("spectrum.top_percent", round((1 - threshold) * 100, 6), source=f"{SPECTRUM}.snr_threshold")
    layers = b.value(f"{SPECTRUM}.layers_to_finetune")
    if layers is not None:
        b.set("spectrum.layers", layers, source=f"{SPECTRUM}.layers_to_finetune")


def precision(b: AxolotlBuilder) -> str:
    """`training.mixed_precision` → the trainer's bf16 / fp16 and the dtype the weights load in; returns the dtype.
    Without CUDA, training runs in fp32 (a notice), as the axolotl dialect's `bf16: auto`."""
    path = "training.mixed_precision"
    mode = b.value(path, "no")
    if mode != "no" and not b.context.cuda:
        b.notice(path, f"{mode}: no CUDA device here, training in fp32")
        mode = "no"
    dtype = {"no": "float32", "fp16": "float16", "bf16": "bfloat16"}[mode]
    if mode != "no":
        b.set(f"training_args.{mode}", True, source=path)
    b.set("run_conf.model_args.torch_dtype", dtype, source=path if b.given(path) else None)
    return dtype
