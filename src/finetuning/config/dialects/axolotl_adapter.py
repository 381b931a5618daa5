"""axolotl's adapter and quantization keys → `peft_conf` and `quant_conf`, as axolotl builds them.

`adapter: lora` trains a LoRA adapter, in 8 bit with `load_in_8bit`; `adapter: qlora` needs `load_in_4bit` and loads
the model as axolotl does (nf4, double quantization, compute in the training dtype, bf16 storage). No adapter is a
full fine-tune, which cannot train quantized weights (axolotl refuses that too). `lora_target_linear` is PEFT's
`all-linear`: every linear layer but the output head, the set axolotl collects itself. `lora_model_dir` continues an
existing adapter, whose saved settings then govern (the lora_* keys are not used, as in axolotl).
"""

from __future__ import annotations

from finetuning.config.dialects.axolotl_common import (
    AxolotlBuilder,
    as_bool,
    as_float,
    as_ints,
    as_mapping,
    as_str,
    as_strs,
    at_least,
    one_of,
    option,
    set_from,
    unused,
)
from finetuning.config.dialects.builder import Key

# axolotl key → LoraConfig argument
LORA_KWARGS = {
    "lora_r": "r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "lora_target_modules": "target_modules",
    "peft_layers_to_transform": "layers_to_transform",
    "lora_modules_to_save": "modules_to_save",
    "lora_fan_in_fan_out": "fan_in_fan_out",
    "peft_use_dora": "use_dora",
    "peft_use_rslora": "use_rslora",
}
LORA_KEYS = (*LORA_KWARGS, "lora_target_linear")
# axolotl's BitsAndBytesConfig for qlora (loaders/model.py); the compute dtype is the training dtype
QLORA_QUANTIZATION = {
    "quantization_type": "bits-and-bytes",
    "load_in_4bit": True,
    "llm_int8_threshold": 6.0,
    "llm_int8_has_fp16_weight": False,
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_quant_storage": "bfloat16",
}


def build_adapter(b: AxolotlBuilder) -> None:
    """adapter, lora_* and load_in_* → peft_conf and quant_conf (with axolotl's refusals of combinations)."""
    adapter = b.value("adapter")
    in_8bit, in_4bit = b.value("load_in_8bit", False), b.value("load_in_4bit", False)
    if adapter is None:
        b.set("peft_conf", {"peft_type": "NO_PEFT"})
        for key in [key for key in ("load_in_8bit", "load_in_4bit") if b.value(key)]:
            b.problem(
                key,
                "a quantized model cannot be fully fine-tuned; set adapter: lora (8 bit) or qlora (4 bit), or drop it",
            )
        unused(b, (*LORA_KEYS, "lora_model_dir"), "no adapter is set (a full fine-tune)")
        return
    _quantization(b, adapter, in_8bit, in_4bit)
    if b.given("lora_model_dir"):
        b.set("peft_conf", {"peft_type": "PRETRAINED_PEFT", "name_or_path": b.value("lora_model_dir")})
        b.maps("peft_conf", "lora_model_dir")
        unused(b, LORA_KEYS, "the adapter in lora_model_dir keeps its own settings")
        return
    kwargs = {}
    for key, argument in LORA_KWARGS.items():
        if b.given(key):
            kwargs[argument] = b.value(key)
            b.maps(f"peft_conf.peft_kwargs.{argument}", key)
    if b.value("lora_target_linear"):
        if b.given("lora_target_modules"):
            b.notice("lora_target_modules", "all-linear (lora_target_linear) already includes these modules")
        kwargs["target_modules"] = "all-linear"
        b.maps("peft_conf.peft_kwargs.target_modules", "lora_target_linear")
    b.set("peft_conf", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": kwargs})
    b.maps("peft_conf.peft_type", "adapter")


def _quantization(b: AxolotlBuilder, adapter: str, in_8bit: bool, in_4bit: bool) -> None:
    extra = b.value("bnb_config_kwargs", {})
    if adapter == "qlora":
        if in_8bit:
            b.problem("load_in_8bit", "adapter qlora loads the model in 4 bit; set load_in_8bit: false")
        elif not in_4bit:
            b.problem("adapter", "qlora needs load_in_4bit: true (or use adapter: lora for an unquantized model)")
        else:
            dtype = b.native.get("run_conf", {}).get("model_args", {}).get("torch_dtype", "float32")
            quantization = {**QLORA_QUANTIZATION, "bnb_4bit_compute_dtype": dtype, **extra}
            set_from(b, "quant_conf", quantization, "load_in_4bit")
            b.maps("quant_conf", "adapter")
    elif in_4bit:
        b.problem(
            "load_in_4bit",
            "axolotl loads a 4-bit model for adapter qlora only (with lora it would load it unquantized); "
            "set adapter: qlora",
        )
    elif in_8bit:
        b.set(
            "quant_conf", {"quantization_type": "bits-and-bytes", "load_in_8bit": True, **extra}, source="load_in_8bit"
        )
    elif extra:
        b.notice("bnb_config_kwargs", "not used: the model is not quantized (load_in_8bit / load_in_4bit)")


def _adapter_dir(b: AxolotlBuilder, path: str, value: str) -> None:
    if b.value("adapter") is None:
        return  # reported with the other adapter keys
    b.maps("peft_conf.name_or_path", path)


ADAPTER_KEYS: tuple[Key, ...] = (
    option(
        "adapter",
        "lora / qlora → `peft_conf` with `peft_type: LORA` (unset: a full fine-tune, `NO_PEFT`); others refused",
        one_of("lora", "qlora"),
    ),
    option(
        "load_in_8bit",
        "`quant_conf`: bits-and-bytes 8 bit (with adapter lora); without an adapter refused",
        as_bool,
    ),
    option(
        "load_in_4bit",
        "`quant_conf`: bits-and-bytes 4 bit nf4, double quantization, compute in the training dtype, bf16 storage "
        "(with adapter qlora, which needs it)",
        as_bool,
    ),
    option("bnb_config_kwargs", "merged into `quant_conf` (BitsAndBytesConfig options)", as_mapping),
    option(
        "lora_model_dir",
        "`peft_conf: {peft_type: PRETRAINED_PEFT, name_or_path}`: training continues that adapter (its own settings "
        "govern)",
        as_str,
        then=_adapter_dir,
    ),
    option("lora_r", "`peft_conf.peft_kwargs.r` (PEFT's default 8)", at_least(1)),
    option("lora_alpha", "`peft_conf.peft_kwargs.lora_alpha` (PEFT's default 8)", as_float),
    option("lora_dropout", "`peft_conf.peft_kwargs.lora_dropout` (default 0)", as_float),
    option("lora_target_modules", "`peft_conf.peft_kwargs.target_modules`", as_strs),
    option(
        "lora_target_linear",
        "`peft_conf.peft_kwargs.target_modules: all-linear` (every linear layer except the output head)",
        as_bool,
    ),
    option("peft_layers_to_transform", "`peft_conf.peft_kwargs.layers_to_transform`", as_ints),
    option("lora_modules_to_save", "`peft_conf.peft_kwargs.modules_to_save` (trained in full and saved)", as_strs),
    option("lora_fan_in_fan_out", "`peft_conf.peft_kwargs.fan_in_fan_out`", as_bool),
    option("peft_use_dora", "`peft_conf.peft_kwargs.use_dora`", as_bool),
    option("peft_use_rslora", "`peft_conf.peft_kwargs.use_rslora`", as_bool),
)
