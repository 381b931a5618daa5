"""`finetuning dpo` end to end: SFT → DPO on the same tiny model, every loss type, KTO, LoRA policy, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.conftest import REPO, sft_config, write_yaml
from tests.e2e.test_sft_cli import run_cli

PAIRS = REPO / "examples" / "data" / "preferences.jsonl"
UNPAIRED = REPO / "examples" / "data" / "kto-unpaired.jsonl"
# Every loss type of TRL 1.16's DPOTrainer, with the options some of them need.
LOSS_TYPES = {
    "sigmoid": {},
    "hinge": {},
    "ipo": {},
    "exo_pair": {"label_smoothing": 0.1},
    "nca_pair": {},
    "robust": {"label_smoothing": 0.1},
    "bco_pair": {},
    "sppo_hard": {},
    "aot": {},
    "aot_unpaired": {},
    "apo_zero": {},
    "apo_down": {},
    "discopop": {},
    "sft": {},
    "sigmoid_norm": {},
}


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory, tiny_model_dir) -> Path:
    """The SFT half of SFT → DPO: full fine-tuning with chat-ml (its tokens join the vocabulary)."""
    work = tmp_path_factory.mktemp("sft")
    config = sft_config(work, tiny_model_dir, training_args={"max_steps": 30})
    assert run_cli("sft", str(write_yaml(work / "sft.yaml", config))) == 0
    return work / "out" / "checkpoint-final"


def dpo_config(tmp_path: Path, model: Path, **changes) -> dict:
    config = sft_config(tmp_path, model, data=PAIRS, **changes)
    config["method"] = "dpo"
    del config["sft_args"]
    return config


def history(checkpoint: Path) -> list[dict]:
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_dpo_learns_every_training_preference(tmp_path, sft_model):
    steps = 40
    config = dpo_config(
        tmp_path,
        sft_model,
        data_conf={"validation_data": {"type": "CONCATENATION", "datasets": [{"path": str(PAIRS)}]}},
        training_args={
            "max_steps": steps,
            "learning_rate": 0.001,
            "beta": 0.1,
            "eval_strategy": "steps",
            "eval_steps": steps,
            "save_strategy": "steps",
            "save_steps": steps,
        },
        batchsize_conf={"per_device_eval_batch_size": 60},
    )
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    logs = history(tmp_path / "out" / f"checkpoint-{steps}")
    train_logs = [entry for entry in logs if "rewards/margins" in entry]
    assert abs(train_logs[0]["rewards/margins"]) < 0.05  # policy == reference at the first step
    assert train_logs[-1]["rewards/margins"] > 10 * max(abs(train_logs[0]["rewards/margins"]), 0.01)
    final_eval = [entry for entry in logs if "eval_rewards/accuracies" in entry][-1]
    assert final_eval["eval_rewards/accuracies"] == 1.0, final_eval  # every training pair now preferred


@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
@pytest.mark.slow
def test_every_loss_type_trains_a_step(tmp_path, sft_model, loss_type):
    config = dpo_config(
        tmp_path, sft_model, training_args={"max_steps": 1, "loss_type": loss_type, **LOSS_TYPES[loss_type]}
    )
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    state = torch.load(tmp_path / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert state.loss_type == [loss_type]


@pytest.mark.parametrize(
    ("options", "resolved_line"),
    [
        ({"rpo_alpha": 0.5}, "- sft"),  # RPO became the "sft" loss with weight alpha
        ({"reference_free": True}, "reference_free: true"),
        ({"precompute_ref_log_probs": True}, "precompute_ref_log_probs: true"),
        ({"max_prompt_length": 8}, "max_prompt_length: 8"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
@pytest.mark.slow
def test_dpo_options_run(tmp_path, sft_model, options, resolved_line):
    config = dpo_config(tmp_path, sft_model, training_args={"max_steps": 2, **options})
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    resolved = (tmp_path / "out" / "checkpoint-final" / "finetuning_config.yaml").read_text()
    assert resolved_line in resolved


@pytest.mark.slow
def test_kto_from_paired_and_unpaired_rows(tmp_path, sft_model, capsys):
    config = dpo_config(
        tmp_path,
        sft_model,
        data_conf={"training_data": {"datasets": [{"path": str(PAIRS)}, {"path": str(UNPAIRED)}]}},
        training_args={"max_steps": 3, "desirable_weight": 1.0, "undesirable_weight": 1.2},
    )
    config["method"] = "kto"
    assert run_cli("dpo", str(write_yaml(tmp_path / "kto.yaml", config))) == 0
    assert "140" in capsys.readouterr().out  # 60 pairs → 120 examples, + 20 unpaired
    args = torch.load(tmp_path / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert type(args).__name__ == "KTOConfig" and args.undesirable_weight == 1.2


@pytest.mark.slow
def test_lora_policy_leaves_the_base_weights_unchanged(tmp_path, sft_model):
    lora = {"peft_type": "LORA", "peft_kwargs": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}}
    config = dpo_config(tmp_path, sft_model, peft_conf=lora, training_args={"max_steps": 5, "learning_rate": 0.01})
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 0
    base = AutoModelForCausalLM.from_pretrained(sft_model)
    policy = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(sft_model), tmp_path / "out" / "checkpoint-final"
    )
    base_state = base.state_dict()
    for name, tensor in policy.get_base_model().state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base_state[name.replace(".base_layer", "")]), name
    lora_b = [t for n, t in policy.state_dict().items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # the adapter did train
    assert all(math.isfinite(t.sum().item()) for t in lora_b)


def test_dpo_refuses_a_template_that_adds_tokens(tmp_path, tiny_model_dir, capsys):
    config = dpo_config(tmp_path, tiny_model_dir)  # chat-ml on the base model, which lacks its tokens
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 2
    error = capsys.readouterr().err
    assert "would add ['<|im_start|>', '<|im_end|>'] to the vocabulary" in error and "finetuning sft" in error


def test_config_for_the_other_command_is_refused(tmp_path, tiny_model_dir, capsys):
    config = dpo_config(tmp_path, tiny_model_dir)
    assert run_cli("sft", str(write_yaml(tmp_path / "dpo.yaml", config))) == 2
    assert "run it with `finetuning dpo" in capsys.readouterr().err


@pytest.mark.slow
def test_loss_type_needing_an_option_is_a_user_error(tmp_path, sft_model, capsys):
    config = dpo_config(tmp_path, sft_model, training_args={"max_steps": 1, "loss_type": "exo_pair"})
    assert run_cli("dpo", str(write_yaml(tmp_path / "dpo.yaml", config))) == 2
    error = capsys.readouterr().err
    assert "training_args: Label smoothing must be greater than 0.0" in error
