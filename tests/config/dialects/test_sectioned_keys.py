"""The sectioned dialect key by key: each key's native value, each refusal, each notice, each invalid combination."""

from __future__ import annotations

import json

import pytest

from finetuning.config.dialects import Context
from finetuning.train.deepspeed import zero_stage_config
from tests.config.dialects.test_sectioned import GPU, config, native_of, notices_of, problems_of
from tests.config.dialects.test_vectorlm import at

LORA = {"method": "lora"}


# --- model ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "native_path", "expected"),
    [
        ("base_model", "org/model", "run_conf.model", "org/model"),
        ("tokenizer", "org/tok", "run_conf.tokenizer", "org/tok"),
        ("trust_remote_code", True, "run_conf.model_args.trust_remote_code", True),
        ("use_liger_kernels", True, "training_args.use_liger_kernel", True),
        ("use_flash_attention", False, "run_conf.model_args.attn_implementation", "sdpa"),
    ],
)
def test_one_model_key(key, value, native_path, expected):
    assert at(native_of(config(model={key: value})), native_path) == expected


def test_trust_remote_code_stays_false_unless_set():
    assert "trust_remote_code" not in native_of(config())["run_conf"].get("model_args", {})


def test_flash_attention_needs_cuda_and_the_package():
    assert at(
        native_of(config(model={"use_flash_attention": True}), GPU), "run_conf.model_args.attn_implementation"
    ) == ("flash_attention_2")
    assert notices_of(config(model={"use_flash_attention": True}))[0] == (
        "model.use_flash_attention: no CUDA device here: sdpa attention instead of flash_attention_2"
    )
    no_package = Context(cuda=True)
    native = native_of(config(model={"use_flash_attention": True}), no_package)
    assert native["run_conf"]["model_args"]["attn_implementation"] == "sdpa"


@pytest.mark.parametrize(("key", "value"), [("load_in_4bit", "yes"), ("trust_remote_code", 1), ("base_model", "")])
def test_model_keys_are_typed(key, value):
    assert problems_of(config(model={key: value}))[0].startswith(f"model.{key}: must be")


# --- fine_tuning: methods ------------------------------------------------------------------------------------------


def test_full_is_no_peft():
    native = native_of(config(fine_tuning={"method": "full"}))
    assert native["peft_conf"] == {"peft_type": "NO_PEFT"} and "quant_conf" not in native


def test_lora_keys():
    lora = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj"], "bias": "lora_only"}
    native = native_of(config(fine_tuning={"method": "lora", "lora": {**lora, "task_type": "CAUSAL_LM"}}))
    assert native["peft_conf"] == {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "peft_kwargs": {
            "r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.1,
            "target_modules": ["q_proj"],
            "bias": "lora_only",
        },
    }


@pytest.mark.parametrize(
    ("lora", "problem"),
    [
        ({"r": 0}, "fine_tuning.lora.r: must be at least 1, got 0"),
        ({"bias": "some"}, "fine_tuning.lora.bias: unknown value 'some'"),
        ({"target_modules": 3}, "fine_tuning.lora.target_modules: must be a string or a list of strings"),
    ],
)
def test_lora_values_are_checked(lora, problem):
    assert problems_of(config(fine_tuning={"method": "lora", "lora": lora}))[0].startswith(problem)


def test_qlora_requires_4_bit_quantization():
    problems = problems_of(config(fine_tuning={"method": "qlora"}))
    assert problems == [
        "fine_tuning.method: qlora: QLoRA requires 4-bit quantization; set model.load_in_4bit: true (or "
        "fine_tuning.quantization.bits: 4), or use method lora"
    ]
    assert (
        "got 8 bits from model.load_in_8bit"
        in problems_of(config(model={"load_in_8bit": True}, fine_tuning={"method": "qlora"}))[0]
    )


@pytest.mark.parametrize(
    "quantized", [{"model": {"load_in_4bit": True}}, {"fine_tuning": {"quantization": {"bits": 4}}}]
)
def test_qlora_on_a_4_bit_model(quantized):
    sections = {**quantized, "fine_tuning": {"method": "qlora", **quantized.get("fine_tuning", {})}}
    native = native_of(config(**sections))
    assert native["quant_conf"] == {
        "quantization_type": "bits-and-bytes",
        "load_in_4bit": True,
        "bnb_4bit_compute_dtype": "float32",
    }
    assert native["peft_conf"]["peft_type"] == "LORA"


def test_full_fine_tuning_of_a_quantized_model_is_refused():
    assert problems_of(config(model={"load_in_8bit": True}, fine_tuning={"method": "full"})) == [
        "model.load_in_8bit: full fine-tuning cannot train a 8-bit quantized model; drop it, or use method qlora "
        "(4 bits) or lora"
    ]


def test_contradicting_bits_are_refused():
    problems = problems_of(
        config(model={"load_in_4bit": True}, fine_tuning={"method": "lora", "quantization": {"bits": 8}})
    )
    assert problems == ["fine_tuning.quantization.bits: asks for 8 bits, and model.load_in_4bit for 4; keep one"]


def test_unknown_method_has_a_did_you_mean():
    assert problems_of(config(fine_tuning={"method": "qlor"}))[0].startswith("fine_tuning.method: unknown value 'qlor'")


def test_sections_of_a_method_not_chosen_are_not_used():
    data = config(fine_tuning={"method": "full", "lora": {"r": 8}, "spectrum": {"snr_threshold": 0.5}})
    notices = notices_of(data)
    assert "fine_tuning.lora.r: not used: method full has no adapter" in notices
    assert "fine_tuning.spectrum.snr_threshold: not used: method is full" in notices


# --- fine_tuning: spectrum -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "top_percent"), [(0.5, 50.0), (0.7, 30.0), (0, 100.0), (0.9, 10.0)])
def test_snr_threshold_is_the_share_left_frozen(threshold, top_percent):
    native = native_of(config(fine_tuning={"method": "spectrum", "spectrum": {"snr_threshold": threshold}}))
    assert native["spectrum"] == {"top_percent": top_percent}
    assert native["peft_conf"] == {"peft_type": "NO_PEFT"}


@pytest.mark.parametrize("layers", ["auto", [0, 1]])
def test_layers_to_finetune(layers):
    native = native_of(config(fine_tuning={"method": "spectrum", "spectrum": {"layers_to_finetune": layers}}))
    assert native["spectrum"] == {"layers": layers}


def test_spectrum_without_its_section_takes_the_defaults():
    assert native_of(config(fine_tuning={"method": "spectrum"}))["spectrum"] == {}


@pytest.mark.parametrize(
    ("spectrum", "problem"),
    [
        ({"snr_threshold": 1}, "fine_tuning.spectrum.snr_threshold: must be at least 0 and below 1"),
        ({"snr_threshold": -0.1}, "fine_tuning.spectrum.snr_threshold: must be at least 0 and below 1"),
        ({"layers_to_finetune": "some"}, 'fine_tuning.spectrum.layers_to_finetune: must be "auto" or a list'),
        ({"layers_to_finetune": []}, 'fine_tuning.spectrum.layers_to_finetune: must be "auto" or a list'),
    ],
)
def test_spectrum_values_are_checked(spectrum, problem):
    assert problems_of(config(fine_tuning={"method": "spectrum", "spectrum": spectrum}))[0].startswith(problem)


# --- fine_tuning: quantization -------------------------------------------------------------------------------------


def test_quantization_keys_on_a_gpu():
    quantization = {"bits": 4, "bnb_4bit_compute_dtype": "float16", "bnb_4bit_quant_type": "nf4"}
    quantization["bnb_4bit_use_double_quant"] = True
    native = native_of(config(fine_tuning={"method": "qlora", "quantization": quantization}), GPU)
    assert native["quant_conf"] == {
        "quantization_type": "bits-and-bytes",
        "load_in_4bit": True,
        "bnb_4bit_compute_dtype": "float16",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }


def test_compute_dtype_is_the_training_dtype_and_float32_without_cuda():
    data = config(model={"load_in_4bit": True}, training={"mixed_precision": "bf16"})
    assert native_of(data, GPU)["quant_conf"]["bnb_4bit_compute_dtype"] == "bfloat16"
    data["fine_tuning"]["quantization"] = {"bnb_4bit_compute_dtype": "bfloat16"}
    assert native_of(data)["quant_conf"]["bnb_4bit_compute_dtype"] == "float32"
    assert (
        "fine_tuning.quantization.bnb_4bit_compute_dtype: bfloat16: no CUDA device here, 4-bit layers compute in float32"
        in (notices_of(data))
    )


def test_quantization_keys_without_quantization_are_not_used():
    notices = notices_of(config(fine_tuning={"method": "lora", "quantization": {"bnb_4bit_quant_type": "nf4"}}))
    assert "fine_tuning.quantization.bnb_4bit_quant_type: not used: the model is not quantized" in notices


def test_bits_must_be_4_or_8():
    assert problems_of(config(fine_tuning={"method": "lora", "quantization": {"bits": 2}}))[0].startswith(
        "fine_tuning.quantization.bits: unknown value 2"
    )


# --- training ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "native_path", "expected"),
    [
        ("epochs", 3, "training_args.num_train_epochs", 3),
        ("learning_rate", "1e-4", "training_args.learning_rate", 1e-4),  # YAML 1.1 reads 1e-4 as a string
        ("lr_scheduler_type", "cosine", "training_args.lr_scheduler_type", "cosine"),
        ("warmup_ratio", 0.03, "training_args.warmup_steps", 0.03),
        ("max_grad_norm", 0.3, "training_args.max_grad_norm", 0.3),
        ("optimizer", "paged_adamw_8bit", "training_args.optim", "paged_adamw_8bit"),
        ("weight_decay", 0.001, "training_args.weight_decay", 0.001),
        ("max_seq_length", 4096, "sft_args.max_seq_length", 4096),
        ("gradient_checkpointing", True, "training_args.activation_checkpointing", True),
    ],
)
def test_one_training_key(key, value, native_path, expected):
    assert at(native_of(config(training={key: value})), native_path) == expected


@pytest.mark.parametrize(("processes", "total"), [(1, 32), (4, 128)])
def test_batch_is_micro_times_accumulation_times_processes(processes, total):
    data = config(training={"micro_batch_size": 2, "gradient_accumulation_steps": 16})
    assert native_of(data, Context(num_processes=processes))["batchsize_conf"] == {
        "max_per_device_train_batch_size": 2,
        "total_train_batch_size": total,
    }


def test_accumulation_in_two_sections_is_one_setting():
    same = config(training={"gradient_accumulation_steps": 4}, distributed={"gradient_accumulation_steps": 4})
    assert native_of(same)["batchsize_conf"]["total_train_batch_size"] == 4
    assert (
        native_of(config(distributed={"gradient_accumulation_steps": 8}))["batchsize_conf"]["total_train_batch_size"]
        == 8
    )
    differ = config(training={"gradient_accumulation_steps": 4}, distributed={"gradient_accumulation_steps": 8})
    assert problems_of(differ) == [
        "distributed.gradient_accumulation_steps: 8 differs from training.gradient_accumulation_steps: 4; they are "
        "one setting, keep one"
    ]


@pytest.mark.parametrize(
    ("mode", "context", "args", "dtype"),
    [
        ("bf16", GPU, {"bf16": True}, "bfloat16"),
        ("fp16", GPU, {"fp16": True}, "float16"),
        ("no", GPU, {}, "float32"),
        ("bf16", Context(), {}, "float32"),
    ],
)
def test_mixed_precision(mode, context, args, dtype):
    native = native_of(config(training={"mixed_precision": mode}), context)
    assert {key: native.get("training_args", {}).get(key) for key in args} == args
    assert "bf16" not in native.get("training_args", {}) or mode == "bf16"
    assert native["run_conf"]["model_args"]["torch_dtype"] == dtype


def test_mixed_precision_without_cuda_is_a_notice():
    assert "training.mixed_precision: bf16: no CUDA device here, training in fp32" in notices_of(
        config(training={"mixed_precision": "bf16"})
    )


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("micro_batch_size", 0, "training.micro_batch_size: must be at least 1, got 0"),
        ("warmup_ratio", 2, "training.warmup_ratio: must be between 0 and 1, got 2"),
        ("mixed_precision", "fp8", "training.mixed_precision: unknown value 'fp8'"),
        ("gradient_checkpointing", "on", "training.gradient_checkpointing: must be true or false"),
    ],
)
def test_training_values_are_checked(key, value, problem):
    assert problems_of(config(training={key: value}))[0].startswith(problem)


# --- dataset -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "native"), [("alpaca", "alpaca"), ("sharegpt", "sharegpt"), ("oasst", "oasst"), ("custom", "messages")]
)
def test_formats(fmt, native):
    data_conf = native_of(config(dataset={"format": fmt, "eval_path": "e.jsonl"}))["data_conf"]
    assert data_conf["training_data"] == {"type": "CONCATENATION", "datasets": [{"path": "d.jsonl", "format": native}]}
    assert data_conf["validation_data"] == {
        "type": "CONCATENATION",
        "datasets": [{"path": "e.jsonl", "format": native}],
    }


def test_no_eval_path_is_no_validation_data_and_prompts_are_masked():
    native = native_of(config())
    assert native["data_conf"]["validation_data"] == {"type": "NONE"}
    assert native["sft_args"]["train_on_completions_only"] is True


def test_chat_formats_use_the_tokenizers_template():
    native = native_of(config(dataset={"format": "custom", "preprocessing": {"use_chat_template": True}}))
    assert native["data_conf"]["chat_template_name"] == "keep-original"
    assert native_of(config(dataset={"format": "sharegpt"}))["data_conf"]["chat_template_name"] == "keep-original"
    assert problems_of(config(dataset={"format": "custom", "preprocessing": {"use_chat_template": False}}))[
        0
    ].startswith("dataset.preprocessing.use_chat_template: false: custom rows are conversations")


def test_alpaca_rows_are_never_templated():
    native = native_of(config(dataset={"preprocessing": {"use_chat_template": True}}))
    assert "chat_template_name" not in native["data_conf"]
    assert notices_of(config(dataset={"preprocessing": {"use_chat_template": True}}))[0].startswith(
        "dataset.preprocessing.use_chat_template: not used for alpaca rows"
    )
    assert notices_of(config(dataset={"preprocessing": {"use_chat_template": False}})) == []


def test_eos_and_bos():
    assert problems_of(config(dataset={"preprocessing": {"add_eos_token": True}})) == []
    assert problems_of(config(dataset={"preprocessing": {"add_eos_token": False}}))[0].startswith(
        "dataset.preprocessing.add_eos_token: false: every reply is trained with the token that ends it"
    )
    for value in (True, False):
        notices = notices_of(config(dataset={"preprocessing": {"add_bos_token": value}}))
        assert notices[0].startswith("dataset.preprocessing.add_bos_token: bos is written where the tokenizer")


def test_dataset_values_are_checked():
    assert problems_of(config(dataset={"format": "jsonl"}))[0].startswith("dataset.format: unknown value 'jsonl'")
    assert problems_of(config(dataset={"train_path": 3}))[0].startswith(
        "dataset.train_path: must be a non-empty string"
    )


# --- distributed ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage_alone_becomes_the_engines_deepspeed_config(stage):
    data = config(training={"gradient_checkpointing": True}, distributed={"use_deepspeed": True, "zero_stage": stage})
    args = native_of(data, Context(num_processes=2, cuda=True))["training_args"]
    assert args["deepspeed"] == zero_stage_config(stage)
    assert args["deepspeed"]["zero_optimization"]["stage"] == stage
    assert "fsdp" not in args and args["activation_checkpointing"] is True  # the trainer's own, as without ZeRO


def test_default_stage_is_2_on_any_number_of_processes():
    for processes in (1, 2):
        native = native_of(config(distributed={"use_deepspeed": True}), Context(num_processes=processes))
        assert native["training_args"]["deepspeed"] == zero_stage_config(2)


def test_deepspeed_config_alone_is_the_path():
    native = native_of(config(distributed={"use_deepspeed": True, "deepspeed_config": "ds.json"}))
    assert native["training_args"]["deepspeed"] == "ds.json"


def test_zero_stage_sets_the_stage_of_the_deepspeed_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 2, "overlap_comm": True}}))
    same = config(distributed={"use_deepspeed": True, "deepspeed_config": "ds.json", "zero_stage": 2})
    assert native_of(same)["training_args"]["deepspeed"] == "ds.json"  # nothing to change: the file as it is
    other = config(distributed={"use_deepspeed": True, "deepspeed_config": "ds.json", "zero_stage": 3})
    assert native_of(other)["training_args"]["deepspeed"] == {"zero_optimization": {"stage": 3, "overlap_comm": True}}
    assert notices_of(other) == ["distributed.zero_stage: ZeRO stage 3 replaces stage 2 of ds.json"]
    missing = config(distributed={"use_deepspeed": True, "deepspeed_config": "nope.json", "zero_stage": 3})
    assert problems_of(missing) == [f"distributed.deepspeed_config: {tmp_path / 'nope.json'}: file not found"]


def test_deepspeed_keys_without_use_deepspeed_are_not_used():
    notices = notices_of(config(distributed={"zero_stage": 3}))
    assert notices == ["distributed.zero_stage: not used: distributed.use_deepspeed is not true"]


# --- output --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "native_path", "expected"),
    [
        ("output_dir", "runs", "training_args.output_dir", "runs"),
        ("logging_steps", 10, "training_args.logging_steps", 10),
        ("save_steps", 500, "training_args.save_steps", 500),
        ("save_steps", 500, "training_args.save_strategy", "steps"),
        ("save_total_limit", 5, "training_args.save_total_limit", 5),
        ("push_to_hub", True, "training_args.push_to_hub", True),
        ("hub_model_id", "user/model", "training_args.hub_model_id", "user/model"),
    ],
)
def test_one_output_key(key, value, native_path, expected):
    assert at(native_of(config(output={key: value})), native_path) == expected


def test_null_values_set_nothing():
    assert native_of(config(output={"hub_model_id": None}))["training_args"] == {}


# --- evaluation ----------------------------------------------------------------------------------------------------

EVAL_DATA = {"eval_path": "e.jsonl"}


def test_do_eval_with_eval_data():
    args = native_of(config(dataset=EVAL_DATA, evaluation={"do_eval": True}))["training_args"]
    assert args["eval_strategy"] == "epoch"
    steps = native_of(config(dataset=EVAL_DATA, evaluation={"eval_steps": 200}))["training_args"]
    assert (steps["eval_strategy"], steps["eval_steps"]) == ("steps", 200)
    assert native_of(config(dataset=EVAL_DATA, evaluation={"eval_strategy": "epoch"}))["training_args"] == {
        "eval_strategy": "epoch"
    }


@pytest.mark.parametrize("evaluation", [{"do_eval": False}, {"eval_strategy": "no"}])
def test_no_evaluation(evaluation):
    assert native_of(config(dataset=EVAL_DATA, evaluation=evaluation))["training_args"]["eval_strategy"] == "no"


def test_do_eval_needs_eval_data():
    assert problems_of(config(evaluation={"do_eval": True})) == [
        "evaluation.do_eval: true needs evaluation data: set dataset.eval_path (a JSONL file)"
    ]


def test_eval_steps_in_two_sections_is_one_setting():
    same = config(dataset=EVAL_DATA, output={"eval_steps": 100}, evaluation={"eval_steps": 100})
    assert native_of(same)["training_args"]["eval_steps"] == 100
    differ = config(dataset=EVAL_DATA, output={"eval_steps": 100}, evaluation={"eval_steps": 200})
    assert problems_of(differ)[0].startswith("evaluation.eval_steps: 200 differs from output.eval_steps: 100")


def test_eval_batch_size():
    native = native_of(config(dataset=EVAL_DATA, evaluation={"eval_batch_size": 8}))
    assert native["batchsize_conf"]["per_device_eval_batch_size"] == 8


@pytest.mark.parametrize(
    ("entry", "benchmark"),
    [
        (
            {"name": "lm-evaluation-harness", "tasks": ["t"], "include_path": "tasks/", "limit": 5},
            {"type": "lm_eval", "tasks": ["t"], "include_path": "tasks/", "limit": 5},
        ),
        ({"name": "lm-eval-harness", "tasks": ["t"]}, {"type": "lm_eval", "tasks": ["t"]}),
        ({"name": "lm_eval", "tasks": ["t"]}, {"type": "lm_eval", "tasks": ["t"]}),
        (
            {"name": "domain-specific-eval", "dataset": "held.jsonl"},
            {"type": "exact_match", "dataset": "held.jsonl", "name": "domain-specific-eval"},
        ),
        (
            {"name": "human-eval", "dataset": "he.jsonl", "allow_code_execution": True},
            {"type": "human_eval", "dataset": "he.jsonl", "allow_code_execution": True},
        ),
    ],
)
def test_benchmarks(entry, benchmark):
    native = native_of(config(evaluation={"benchmarks": [entry]}))
    assert native["eval_conf"] == {"benchmarks": [benchmark]}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("lm-evaluation-harness", "evaluation.benchmarks[0]: lm-evaluation-harness: needs tasks: "),
        ("domain-specific-eval", "evaluation.benchmarks[0]: domain-specific-eval: needs dataset: "),
        ("human-eval", "evaluation.benchmarks[0]: human-eval: needs dataset: a local JSONL in the HumanEval layout"),
        ({"name": "human-eval"}, "evaluation.benchmarks[0]: human-eval: needs dataset: "),
        ("mmlu", "evaluation.benchmarks[0]: unknown benchmark 'mmlu'"),
    ],
)
def test_benchmarks_without_what_they_need_are_refused(entry, problem):
    problems = problems_of(config(evaluation={"benchmarks": [entry]}))
    assert problems[0].startswith(problem), problems


def test_benchmarks_must_be_a_list():
    assert problems_of(config(evaluation={"benchmarks": "human-eval"}))[0].startswith(
        "evaluation.benchmarks: must be a list of benchmarks"
    )


def test_benchmark_problems_are_reported_at_the_entry(tmp_path, capsys):
    from finetuning.cli import main
    from tests.config.dialects.test_sectioned import write

    entries = [{"name": "lm_eval", "tasks": ["a"], "limit": -1}, {"name": "domain-specific-eval", "dataset": "x.jsonl"}]
    assert main(["validate", str(write(tmp_path, config(evaluation={"benchmarks": entries})))]) == 2
    assert "evaluation.benchmarks[0].limit: must be greater than 0" in capsys.readouterr().err
