"""The Silogen engine's own end-to-end tests, run against our CLI on tiny local GPT-2 and Gemma2 models.

Its published suite trains GPT-2 (Conv1D layers: LoRA on `c_attn` needs `fan_in_fan_out`, tied embeddings) and
Gemma2 (tied embeddings, logit softcapping, sliding-window layers), with data written as one JSON array. The configs
below are Silogen's, key for key (bf16 on CPU, SGD at lr 0.5), except: the model is a local
random-init one of the same architecture (no download), `run_conf.determinism` is left out (another item adds it),
DPO configs name `method: dpo` (one test without it waits for `finetuning dpo` to infer the method), and only the
GPT-2 LoRA test saves a checkpoint at every step as Silogen's do (elsewhere: once, the checkpoint the asserts read).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from finetuning.cli import main as cli_main
from tests.conftest import FACTS, write_yaml

STEPS = 15

# Silogen's data, each written as one JSON array (not JSONL).
SFT_ROWS = [
    {
        "dataset": "test-1",
        "id": "test-1-1",
        "messages": [
            {"role": "system", "content": "A B C"},
            {"role": "user", "content": "A B C"},
            {"role": "assistant", "content": "A B C"},
        ],
    }
]
DPO_ROWS = [
    {
        "dataset": "test-1",
        "id": "test-1-1",
        "prompt_messages": [{"role": "system", "content": "A B C"}, {"role": "user", "content": "A B C"}],
        "chosen_messages": [{"role": "assistant", "content": "A B C"}],
        "rejected_messages": [{"role": "assistant", "content": "D E F"}],
    }
]


def silogen_lora(target_modules: list[str], **peft_kwargs) -> dict:
    """The LoRA section of Silogen's tests (r 4, alpha 4, dropout 0.1) on `target_modules`."""
    kwargs = {"r": 4, "lora_alpha": 4, "lora_dropout": 0.1, "target_modules": target_modules, **peft_kwargs}
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": kwargs}


GEMMA2_LORA = silogen_lora(["q_proj", "k_proj", "v_proj", "o_proj"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random GPT-2 and Gemma2 with the Llama fixture's tokenizer (512 tokens; chat-ml grows it to 514)."""
    from finetuning.tools.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("architectures")
    return {name: build_tiny_model(root / name, [FACTS], architecture=name) for name in ("gpt2", "gemma2")}


def silogen_config(work: Path, model: Path, rows: list[dict], **sections) -> dict:
    """Silogen's test config around `model`, its rows written to `work/data.json`; `sections` replace whole keys."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    config = {
        "data_conf": {
            "chat_template_name": "chat-ml",
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": str(data)}]},
            "validation_data": {"type": "NONE"},
        },
        "batchsize_conf": {"total_train_batch_size": 1, "max_per_device_train_batch_size": 1},
        "training_args": {
            "use_cpu": True,
            "output_dir": str(work / "outputs"),
            "bf16": True,
            "gradient_checkpointing": False,
            "gradient_checkpointing_kwargs": {"use_reentrant": False},
            "learning_rate": 0.5,
            "logging_steps": 1,
            "logging_strategy": "steps",
            "lr_scheduler_type": "constant",
            "optim": "sgd",
            "max_steps": STEPS,
            "num_train_epochs": -1,
            "overwrite_output_dir": True,
            "push_to_hub": False,
            "report_to": ["none"],
            "save_strategy": "steps",
            "save_steps": STEPS,  # Silogen: 1 (kept in the GPT-2 LoRA test; a checkpoint per step is slow elsewhere)
            "eval_strategy": "no",
        },
        "sft_args": {"max_seq_length": 128},
        "peft_conf": {"peft_type": "NO_PEFT"},
        "run_conf": {
            "model": str(model),
            "model_args": {"attn_implementation": "eager", "use_cache": False},
            "resume_from_checkpoint": False,
        },
    }
    config.update(sections)
    return config


def dpo_config(work: Path, model: Path, method: str | None = "dpo", **sections) -> dict:
    """Silogen's DPO test config: the SFT one with DPO rows and options, no sft_args."""
    config = silogen_config(work, model, DPO_ROWS, **sections)
    del config["sft_args"]
    config["training_args"].update({"remove_unused_columns": False, "beta": 0.01, "loss_type": "sigmoid"})
    if method is not None:
        config = {"method": method, **config}
    return config


def train(command: str, work: Path, config: dict) -> list[dict]:
    """Run `finetuning --num-preprocess-workers 1 COMMAND CONFIG` as Silogen does; the last checkpoint's log."""
    work.mkdir(parents=True, exist_ok=True)
    path = write_yaml(work / "config.yaml", config)
    assert cli_main(["--num-preprocess-workers", "1", command, str(path)]) == 0
    steps = config["training_args"]["max_steps"]
    state = json.loads((work / "outputs" / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    return state["log_history"]


def train_losses(log: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log if "loss" in entry]


def chat_ml_loss(model, tokenizer) -> float:
    """Causal-LM loss of the training conversation, rendered as the saved tokenizer renders it."""
    text = tokenizer.apply_chat_template(SFT_ROWS[0]["messages"], tokenize=False)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return float(model(**batch, labels=batch["input_ids"]).loss)


def assert_lora_trained_only_the_adapter(original: Path, outputs: Path) -> None:
    """The saved base differs from the original only by the two chat-ml rows; the adapter loads on it with plain
    PEFT and carries the training (its loss on the example is the trained one, the base's is that of chance)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    new_base, adapter = outputs / "checkpoint-new-basemodel", outputs / "checkpoint-final"
    before, after = load_file(original / "model.safetensors"), load_file(new_base / "model.safetensors")
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        if tensor.shape == after[name].shape:
            assert torch.equal(tensor, after[name]), f"{name} changed in the base"
        else:  # the embedding: the original rows untouched, two rows more
            assert after[name].shape[0] == tensor.shape[0] + 2 and torch.equal(after[name][: tensor.shape[0]], tensor)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any(".lora_B." in name and tensor.abs().sum() > 0 for name, tensor in weights.items())
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(new_base)
    base_loss = chat_ml_loss(base, tokenizer)
    trained_loss = chat_ml_loss(PeftModel.from_pretrained(base, adapter).eval(), tokenizer)
    assert base_loss > math.log(len(tokenizer)) - 1 and trained_loss < base_loss / 2, (base_loss, trained_loss)


@pytest.mark.slow
def test_gpt2_lora_on_conv1d_with_fan_in_fan_out(tmp_path, models):
    peft_conf = silogen_lora(["c_attn"], fan_in_fan_out=True)
    config = silogen_config(tmp_path, models["gpt2"], SFT_ROWS, peft_conf=peft_conf)
    config["training_args"]["save_steps"] = 1  # as Silogen: a checkpoint at every step
    log = train("sft", tmp_path, config)
    losses = train_losses(log)
    assert math.isclose(losses[0], math.log(514), abs_tol=0.5)  # chance over the 514-token vocabulary
    assert losses[-1] < 3.0  # Silogen's bar
    outputs = tmp_path / "outputs"
    adapter_config = json.loads((outputs / "checkpoint-final" / "adapter_config.json").read_text())
    assert adapter_config["fan_in_fan_out"] is True and adapter_config["target_modules"] == ["c_attn"]
    assert_lora_trained_only_the_adapter(models["gpt2"], outputs)


@pytest.mark.slow
def test_gpt2_full_fine_tuning_with_a_weighted_mix_and_evaluation(tmp_path, models):
    config = silogen_config(tmp_path, models["gpt2"], SFT_ROWS)
    data = str(tmp_path / "data.json")
    config["data_conf"]["training_data"] = {"type": "PRECOMPUTE_WEIGHTED_MIX", "datasets": [{"path": data}]}
    config["data_conf"]["validation_data"] = {"type": "CONCATENATION", "datasets": [{"path": data}]}
    config["training_args"].update({"learning_rate": 1.0, "eval_strategy": "steps", "eval_steps": 10})
    log = train("sft", tmp_path, config)
    losses = train_losses(log)
    assert math.isclose(losses[0], math.log(514), abs_tol=0.5)
    assert losses[-1] < 4.0  # Silogen's bar
    evals = [entry["eval_loss"] for entry in log if "eval_loss" in entry]
    assert evals and evals[0] < losses[0] - 1  # evaluated from step 10 on, on the (same) example it learned


@pytest.mark.slow
def test_gemma2_lora(tmp_path, models):
    log = train("sft", tmp_path, silogen_config(tmp_path, models["gemma2"], SFT_ROWS, peft_conf=GEMMA2_LORA))
    losses = train_losses(log)
    assert math.isclose(losses[0], math.log(514), abs_tol=0.5)
    assert losses[-1] < 5.0  # Silogen's bar
    assert_lora_trained_only_the_adapter(models["gemma2"], tmp_path / "outputs")


def assert_dpo_prefers_chosen(log: list[dict], rising_by: float) -> None:
    margins = [entry["rewards/margins"] for entry in log if "rewards/margins" in entry]
    assert abs(margins[0]) < 0.03  # policy == reference at the first step
    assert margins[-1] > margins[0] + rising_by, margins
    assert [entry for entry in log if "rewards/accuracies" in entry][-1]["rewards/accuracies"] == 1.0


@pytest.mark.slow
def test_gemma2_dpo(tmp_path, models):
    config = dpo_config(tmp_path, models["gemma2"])
    config["data_conf"]["chat_template_name"] = "mistral-with-system"
    assert_dpo_prefers_chosen(train("dpo", tmp_path, config), rising_by=0.07)  # Silogen: margins above 0.07


@pytest.mark.slow
def test_sft_then_dpo_lora_on_the_sft_output(tmp_path, models):
    sft_log = train("sft", tmp_path / "sft", silogen_config(tmp_path / "sft", models["gemma2"], SFT_ROWS))
    assert train_losses(sft_log)[-1] < 4.5  # Silogen's bar
    sft_output = tmp_path / "sft" / "outputs" / "checkpoint-final"
    config = dpo_config(
        tmp_path / "dpo",
        sft_output,
        peft_conf={**GEMMA2_LORA, "peft_kwargs": {**GEMMA2_LORA["peft_kwargs"], "lora_dropout": 0.0}},
    )
    config["training_args"].update({"beta": 0.1, "max_steps": 20, "save_steps": 20})
    log = train("dpo", tmp_path / "dpo", config)
    # The DPO base is the SFT output: at the first step it already prefers the answer SFT taught ("A B C") over
    # "D E F" by far (a random base scores both alike), and it needs no new tokens (chat-ml came with it).
    first = next(entry for entry in log if "logps/chosen" in entry)
    assert first["logps/chosen"] > first["logps/rejected"] + 5, first
    assert_dpo_prefers_chosen(log, rising_by=0.03)  # Silogen: margins above 0.03
    dpo_output = tmp_path / "dpo" / "outputs"
    adapter_config = json.loads((dpo_output / "checkpoint-final" / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]).resolve() == sft_output.resolve()
    assert not adapter_config.get("modules_to_save") and not (dpo_output / "checkpoint-new-basemodel").exists()


def test_dpo_config_without_method_is_read_as_dpo(tmp_path, models):
    """Silogen's DPO configs do not name `method:`; `finetuning dpo` decides it."""
    config = dpo_config(tmp_path, models["gemma2"], method=None)
    config["data_conf"]["chat_template_name"] = "mistral-with-system"
    config["training_args"]["max_steps"] = 2
    log = train("dpo", tmp_path, config)
    assert any("rewards/margins" in entry for entry in log)
