"""VectorLM's two shipped configs (examples/vectorlm-*.yaml: only paths changed) train end to end on a CPU: the
preprocessing runs first, evaluation at step 0, checkpoints by save_frequency, the final model where VectorLM puts
it, W&B offline; and a problem found while running is reported at the VectorLM key."""

from __future__ import annotations

import json

import pytest
import yaml

from finetuning.cli import main
from tests.conftest import FACTS, REPO
from tests.test_examples import demo_root, in_demo_root  # noqa: F401 (fixtures)


def test_shipped_raw_dataset_is_the_demo_facts_as_text():
    """examples/data/vectorlm-raw (a save_to_disk DatasetDict, the examples' load_path) is derived from facts.jsonl:
    `question` is the user's turn, `text` the user's and the assistant's turns."""
    from datasets import load_from_disk

    rows = load_from_disk(str(REPO / "examples" / "data" / "vectorlm-raw"))["train"].to_list()
    facts = [json.loads(line) for line in FACTS.read_text().splitlines()]

    def turn(fact, role):
        return next(m["content"] for m in fact["messages"] if m["role"] == role)

    assert rows == [
        {"question": turn(f, "user"), "text": f"{turn(f, 'user')} {turn(f, 'assistant')}", "id": f["id"]} for f in facts
    ]


@pytest.fixture
def wandb_offline(in_demo_root, monkeypatch):  # noqa: F811
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # the shipped configs log to W&B; no account, nothing sent
    monkeypatch.setenv("WANDB_DIR", str(in_demo_root))
    return in_demo_root


def _eval_steps(output) -> list[int]:
    state = json.loads(next(output.glob("checkpoint-*/trainer_state.json")).read_text())
    return [entry["step"] for entry in state["log_history"] if "eval_loss" in entry]


@pytest.mark.slow
def test_vectorlm_config_trains_as_shipped(wandb_offline):
    from datasets import load_from_disk

    assert main(["sft", "examples/vectorlm-config.yaml"]) == 0
    root = wandb_offline
    prepared = load_from_disk(str(root / "demo_output" / "vectorlm-config-data"))  # dataset_preprocess ran first
    assert len(prepared) == 100 and {"input_ids", "labels"} <= set(prepared.column_names)
    output = root / "demo_output" / "vectorlm-config"
    assert (output / "final-model" / "model.safetensors").is_file()  # VectorLM's output_dir/final-model
    # 100 rows / (8 per device × 4 accumulated) = 4 optimizer steps; save_frequency 0.25: a checkpoint every step
    assert sorted(p.name for p in output.glob("checkpoint-*")) == [f"checkpoint-{n}" for n in range(1, 5)]
    assert _eval_steps(output)[0] == 0  # VectorLM evaluates at step 0 (logging_steps)
    resolved = yaml.safe_load((output / "final-model" / "finetuning_config.yaml").read_text())
    assert resolved["data_conf"]["training_data"]["datasets"][0]["format"] == "tokenized"
    assert resolved["batchsize_conf"]["total_train_batch_size"] == 32
    (run,) = (root / "wandb").glob("offline-run-*")
    assert b"MedGPT" in next(run.glob("run-*.wandb")).read_bytes()  # wandb_config.project


@pytest.mark.slow
def test_vectorlm_lora_config_trains_as_shipped(wandb_offline):
    assert main(["sft", "examples/vectorlm-lora.yaml"]) == 0
    final = wandb_offline / "demo_output" / "vectorlm-lora" / "final-model"
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (8, 32, 0.1)
    assert not (final / "model.safetensors").exists()  # LoRA: the adapter only


def test_a_problem_found_while_running_names_the_vectorlm_key(tmp_path, tiny_model_dir, capsys, monkeypatch):
    config = yaml.safe_load((REPO / "examples" / "vectorlm-config.yaml").read_text())
    config["model"] = str(tiny_model_dir)
    config["enable_wandb_logging"] = False
    config["dataset_preprocess"].update(load_path=str(tmp_path / "missing"), save_path=str(tmp_path / "data"))
    path = tmp_path / "vectorlm.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["preprocess", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"dataset_preprocess.load_path: {tmp_path / 'missing'}: not found" in error
    assert "data_conf.preprocess" not in error
