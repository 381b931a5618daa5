"""The axolotl dialect's model keys: model and tokenizer, precision (bf16 auto on a CPU and on a GPU), attention,
adapters and quantization."""

from __future__ import annotations

import pytest

from finetuning.config.dialects import Context
from tests.config.dialects.test_axolotl import CPU, GPU, config, native_of, notices_of, problems_of
from tests.config.dialects.test_vectorlm import at

# --- model keys ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "native_path", "expected"),
    [
        ("base_model", "org/model", "run_conf.model", "org/model"),
        ("tokenizer_config", "org/tok", "run_conf.tokenizer", "org/tok"),
        ("tokenizer_use_fast", False, "run_conf.use_fast_tokenizer", False),
        ("revision_of_model", "v2", "run_conf.model_args.revision", "v2"),
        ("trust_remote_code", True, "run_conf.model_args.trust_remote_code", True),
        (
            "overrides_of_model_config",
            {"rope_scaling": {"type": "linear", "factor": 2.0}},
            "run_conf.config_overrides",
            {"rope_scaling": {"type": "linear", "factor": 2.0}},
        ),
        ("tokens", ["<think>", "</think>"], "run_conf.added_tokens", ["<think>", "</think>"]),
        ("tokens", "<think>", "run_conf.added_tokens", ["<think>"]),
        ("special_tokens", {"eos_token": "<|eot_id|>"}, "run_conf.special_tokens", {"eos_token": "<|eot_id|>"}),
        ("device_map", "auto", "run_conf.model_args.device_map", "auto"),
        ("max_memory", {0: "20GiB"}, "run_conf.model_args.max_memory", {0: "20GiB"}),
        ("low_cpu_mem_usage", True, "run_conf.model_args.low_cpu_mem_usage", True),
        ("base_model_config", "m", "run_conf.model", "m"),  # the same as base_model: nothing more
    ],
)
def test_one_model_key(key, value, native_path, expected):
    assert at(native_of(config(**{key: value})), native_path) == expected


def test_model_and_tokenizer_classes():
    notices = notices_of(config(model_type="LlamaForCausalLM", tokenizer_type="LlamaTokenizer"))
    assert "model_type: LlamaForCausalLM: loaded with AutoModelForCausalLM, which picks the class from the " in (
        " ".join(notices)
    )
    assert notices_of(config(model_type="AutoModelForCausalLM", tokenizer_type="AutoTokenizer")) == [
        "gradient_accumulation_steps: 1 per device × 1 accumulation step(s) × 1 process(es) = "
        "batchsize_conf.total_train_batch_size 1"
    ]
    assert problems_of(config(model_type="AutoModelForSequenceClassification")) == [
        "model_type: 'AutoModelForSequenceClassification': only causal language models train here; they load with "
        "AutoModelForCausalLM (or name a *ForCausalLM class)"
    ]
    assert problems_of(config(tokenizer_type="AutoProcessor"))[0].startswith("tokenizer_type: 'AutoProcessor'")


def test_base_model_config_elsewhere_is_refused():
    assert problems_of(config(base_model_config="other")) == [
        "base_model_config: the model's config.json is read from base_model; a config from another path is not "
        "supported (change single settings with overrides_of_model_config)"
    ]


# --- precision -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "context", "training_args", "dtype"),
    [
        ({}, CPU, {}, "float32"),  # bf16: auto (the default) without CUDA
        ({}, GPU, {"bf16": True}, "bfloat16"),
        ({"bf16": "auto", "fp16": True}, GPU, {"fp16": True}, "float16"),  # fp16 wins over auto, as in axolotl
        ({"bf16": True}, CPU, {"bf16": True}, "bfloat16"),  # as written
        ({"bf16": False}, GPU, {}, "float32"),
        ({"bf16": "full"}, GPU, {"bf16_full_eval": True}, "bfloat16"),
        ({"bf16": False, "load_in_8bit": True, "adapter": "lora"}, GPU, {}, "float16"),
        ({"bf16": False, "bfloat16": True}, GPU, {}, "bfloat16"),
        ({"bf16": False, "float16": True}, GPU, {}, "float16"),
        ({"tf32": True}, GPU, {"bf16": True, "tf32": True}, "bfloat16"),
    ],
)
def test_precision(changes, context, training_args, dtype):
    native = native_of(config(**changes), context)
    precision = {k: v for k, v in native["training_args"].items() if k in ("bf16", "fp16", "bf16_full_eval", "tf32")}
    assert (precision, native["run_conf"]["model_args"]["torch_dtype"]) == (training_args, dtype)


def test_bf16_auto_says_what_it_chose_in_one_line():
    assert [n for n in notices_of(config(bf16="auto")) if n.startswith("bf16")] == [
        "bf16: auto: no CUDA device here, training in fp32"
    ]
    assert [n for n in notices_of(config(bf16="auto"), GPU) if n.startswith("bf16")] == [
        "bf16: auto: bf16 on this CUDA device"
    ]
    assert not [n for n in notices_of(config()) if n.startswith("bf16")]  # the default, unwritten: no line


def test_tf32_without_cuda_is_a_notice():
    assert "tf32: no CUDA device here: TF32 (a CUDA matmul mode) does not apply" in notices_of(config(tf32=True))
    assert "tf32" not in native_of(config(tf32=True))["training_args"]


# --- attention -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "context", "expected"),
    [
        ({"flash_attention": True}, GPU, "flash_attention_2"),
        ({"flash_attention": True}, CPU, "sdpa"),
        ({"flash_attention": True}, Context(cuda=True), "sdpa"),  # no flash_attn package
        ({"sdp_attention": True}, CPU, "sdpa"),
        ({"eager_attention": True}, CPU, "eager"),
        ({"flex_attention": True}, CPU, "flex_attention"),
        ({"attn_implementation": "eager", "flash_attention": True}, GPU, "eager"),  # the new key wins
        ({"attn_implementation": "kernels-community/flash-attn2"}, CPU, "kernels-community/flash-attn2"),
    ],
)
def test_attention(changes, context, expected):
    assert native_of(config(**changes), context)["run_conf"]["model_args"]["attn_implementation"] == expected


def test_flash_attention_fallbacks_say_why():
    assert "flash_attention: no CUDA device here: sdpa attention instead of flash_attention_2" in notices_of(
        config(flash_attention=True)
    )
    assert (
        "flash_attention: the flash_attn package is not installed: sdpa attention instead of flash_attention_2"
        in notices_of(config(flash_attention=True), Context(cuda=True))
    )


def test_attention_implementations_that_are_refused():
    assert problems_of(config(attn_implementation="xformers")) == [
        "attn_implementation: xformers is not supported; use flash_attention or sdp_attention"
    ]


# --- adapters and quantization -------------------------------------------------------------------------------------


def test_qlora_loads_in_4_bit_as_axolotl_does():
    native = native_of(config(adapter="qlora", load_in_4bit=True, lora_r=8), GPU)
    assert native["quant_conf"] == {
        "quantization_type": "bits-and-bytes",
        "load_in_4bit": True,
        "llm_int8_threshold": 6.0,
        "llm_int8_has_fp16_weight": False,
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_quant_storage": "bfloat16",
        "bnb_4bit_compute_dtype": "bfloat16",  # the training dtype
    }
    assert native["peft_conf"] == {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": {"r": 8}}


def test_lora_in_8_bit_and_bnb_options():
    native = native_of(config(adapter="lora", load_in_8bit=True, bnb_config_kwargs={"llm_int8_threshold": 5.0}))
    assert native["quant_conf"] == {
        "quantization_type": "bits-and-bytes",
        "load_in_8bit": True,
        "llm_int8_threshold": 5.0,
    }


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"load_in_4bit": True},
            "load_in_4bit: a quantized model cannot be fully fine-tuned; set adapter: lora (8 bit) or "
            "qlora (4 bit), or drop it",
        ),  # fmt: skip
        (
            {"adapter": "qlora"},
            "adapter: qlora needs load_in_4bit: true (or use adapter: lora for an unquantized model)",
        ),
        (
            {"adapter": "qlora", "load_in_8bit": True},
            "load_in_8bit: adapter qlora loads the model in 4 bit; set load_in_8bit: false",
        ),  # fmt: skip
        (
            {"adapter": "lora", "load_in_4bit": True},
            "load_in_4bit: axolotl loads a 4-bit model for adapter qlora only "
            "(with lora it would load it unquantized); set adapter: qlora",
        ),  # fmt: skip
        ({"adapter": "llama-adapter"}, "adapter: unknown value 'llama-adapter'; expected one of lora, qlora"),
    ],
)
def test_adapter_and_quantization_combinations(changes, problem):
    assert problems_of(config(**changes)) == [problem]


def test_lora_options():
    data = config(
        adapter="lora",
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.1,
        lora_target_linear=True,
        lora_target_modules=["q_proj"],
        peft_layers_to_transform=[0, 1],
        lora_modules_to_save=["embed_tokens", "lm_head"],
        lora_fan_in_fan_out=False,
        peft_use_rslora=True,
    )
    assert native_of(data)["peft_conf"]["peft_kwargs"] == {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
        "target_modules": "all-linear",  # lora_target_linear: every linear layer but the head
        "layers_to_transform": [0, 1],
        "modules_to_save": ["embed_tokens", "lm_head"],
        "fan_in_fan_out": False,
        "use_rslora": True,
    }
    assert "lora_target_modules: all-linear (lora_target_linear) already includes these modules" in notices_of(data)


def test_lora_model_dir_continues_that_adapter():
    data = config(adapter="lora", lora_model_dir="old/adapter", lora_r=4)
    assert native_of(data)["peft_conf"] == {"peft_type": "PRETRAINED_PEFT", "name_or_path": "old/adapter"}
    assert "lora_r: not used: the adapter in lora_model_dir keeps its own settings" in notices_of(data)


def test_lora_keys_without_an_adapter_are_noticed():
    data = config(lora_r=8, lora_alpha=16)
    assert native_of(data)["peft_conf"] == {"peft_type": "NO_PEFT"}
    assert "lora_r: not used: no adapter is set (a full fine-tune)" in notices_of(data)
