"""`finetuning validate` checks everything it can before loading a model: each mistake here used to pass `validate`
and fail only later. Each must end `validate` with exit 2 and one `error:` block naming the config key, and `sft`
the same way before any model loads (nothing written in output_dir)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetuning.cli import main
from tests.conftest import FACTS, deep_update, sft_config, write_jsonl, write_yaml
from tests.e2e.test_bad_inputs import assert_one_clear_user_error

LORA = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "peft_kwargs": {"r": 4, "target_modules": ["q_proj"]}}
EVALUATED = {
    "data_conf": {"validation_data": {"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]}},
    "training_args": {"eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 3},
}


def refused_by_both(tmp_path: Path, config: dict, expected: list[str], capsys) -> str:
    """validate and sft both exit 2 with one error block holding every `expected` fragment; sft writes nothing."""
    path = str(write_yaml(tmp_path / "c.yaml", config))
    for command in ("validate", "sft"):
        code = main([command, path])
        err = capsys.readouterr().err
        for fragment in expected:
            assert_one_clear_user_error(code, err, fragment, tmp_path / "out")
        assert not (tmp_path / "out" / "checkpoint-new-basemodel").exists(), "a refused run saved a resized base"
    return err


def test_save_steps_not_a_multiple_of_eval_steps_in_config_key_wording(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, **deep_update(EVALUATED, {"training_args": {}}))
    config["training_args"]["load_best_model_at_end"] = True
    err = refused_by_both(
        tmp_path,
        config,
        [
            "training_args.load_best_model_at_end: requires the saving steps to be a round multiple of the evaluation",
            "Set training_args.save_steps (now 3) to a multiple of training_args.eval_steps (now 2)",
        ],
        capsys,
    )
    assert "--" not in err


def test_target_modules_that_match_no_layer_list_the_layer_names(tmp_path, tiny_model_dir, capsys):
    config = sft_config(
        tmp_path, tiny_model_dir, peft_conf=deep_update(LORA, {"peft_kwargs": {"target_modules": ["q_prj"]}})
    )
    refused_by_both(
        tmp_path,
        config,
        [
            "peft_conf.peft_kwargs.target_modules: ['q_prj'] matches no layer of the model",
            "did you mean 'q_prj' → 'q_proj'?",
            "The model's layer names: embed_tokens, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        ],
        capsys,
    )


def test_max_seq_length_that_leaves_no_example(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, sft_args={"max_seq_length": 8})
    refused_by_both(
        tmp_path,
        config,
        ["sft_args.max_seq_length: all 100 training examples are longer than 8 tokens, so none is left"],
        capsys,
    )


def test_validate_reports_how_many_examples_would_be_dropped(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, sft_args={"max_seq_length": 30})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    out = capsys.readouterr().out
    assert "validation examples would be trained on" in out
    assert "dropped as longer than sft_args.max_seq_length=30: training: " in out


def test_mistyped_local_model_path_offline_is_an_error_at_once(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """`tiny-bse` beside `tiny-base` is a typo, not a hub id; offline it cannot be fetched, so it is an error now,
    not after a minute of download retries. The same for the tokenizer and the adapter path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(tiny_model_dir, tmp_path / "tiny-base")
    config = sft_config(tmp_path, tiny_model_dir, run_conf={"model": "tiny-bse", "tokenizer": "tiny-bse"})
    config["peft_conf"] = {"peft_type": "PRETRAINED_PEFT", "name_or_path": "tiny-bse"}
    refused_by_both(
        tmp_path,
        config,
        [
            f"run_conf.model: 'tiny-bse': not a local directory ({tmp_path}/tiny-bse does not exist) and not in the "
            f"local Hugging Face cache, and HF_HUB_OFFLINE is set, so it cannot be fetched from the Hub; did you mean "
            f"{tmp_path}/tiny-base?",
            "run_conf.tokenizer: 'tiny-bse': not a local directory",
            "peft_conf.name_or_path: 'tiny-bse': not a local directory",
        ],
        capsys,
    )


def test_missing_deepspeed_file(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = sft_config(tmp_path, tiny_model_dir, training_args={"deepspeed": "ds.json"})
    refused_by_both(tmp_path, config, [f"training_args.deepspeed: {tmp_path}/ds.json: file not found"], capsys)


def test_deepspeed_file_that_does_not_parse_names_file_and_line(tmp_path, tiny_model_dir, capsys):
    deepspeed = tmp_path / "ds.json"
    deepspeed.write_text('{\n  "train_batch_size": "auto",\n}\n')
    config = sft_config(tmp_path, tiny_model_dir, training_args={"deepspeed": str(deepspeed)})
    refused_by_both(tmp_path, config, [f"training_args.deepspeed: {deepspeed}:3: invalid JSON"], capsys)


def test_config_errors_do_not_hide_data_errors(tmp_path, tiny_model_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    config = sft_config(tmp_path, tiny_model_dir, data=data, sft_args={"max_seq_len": 64})
    refused_by_both(
        tmp_path,
        config,
        ["sft_args.max_seq_len: unknown key; did you mean 'max_seq_length'?", f"{data}:1: ", "no assistant message"],
        capsys,
    )


def test_validate_says_would_resume_from(tmp_path, tiny_model_dir, capsys, caplog):
    checkpoint = tmp_path / "out" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4, "train_batch_size": 8}))
    (checkpoint / "model.safetensors").write_bytes(b"")
    config = sft_config(tmp_path, tiny_model_dir, run_conf={"resume_from_checkpoint": "auto"})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 0, capsys.readouterr().err
    assert f"would resume from {checkpoint}" in capsys.readouterr().out
    assert "resuming from" not in caplog.text


@pytest.mark.parametrize(
    "target_modules", ["all-linear", r".*\.(q|v)_proj", ["q_proj", "v_proj"]], ids=["all-linear", "regex", "list"]
)
def test_valid_target_modules_pass_validate(tmp_path, tiny_model_dir, capsys, target_modules):
    config = sft_config(tmp_path, tiny_model_dir, peft_conf=deep_update(LORA, {"peft_kwargs": {}}))
    config["peft_conf"]["peft_kwargs"]["target_modules"] = target_modules
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 0, capsys.readouterr().err


def test_layers_to_transform_beyond_the_model_is_caught(tmp_path, tiny_model_dir, capsys):
    """PEFT itself matches on the meta-device skeleton, so layer filters count too (the tiny model has 2 layers)."""
    config = sft_config(
        tmp_path, tiny_model_dir, peft_conf=deep_update(LORA, {"peft_kwargs": {"layers_to_transform": [5]}})
    )
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    assert "peft_conf.peft_kwargs.target_modules: ['q_proj'] matches no layer" in capsys.readouterr().err
