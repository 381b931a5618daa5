"""The worker-job dialect: a job file runs with every command as the worker runs it — its ids checked, its args
translated by the axolotl dialect with problems at `input.args.<key>`, its credentials never in the native config."""

from __future__ import annotations

import json

import pytest
import yaml

from finetuning.cli import main
from finetuning.config.dialects import detect, translate
from finetuning.config.dialects.docs import DOCS, with_table
from finetuning.worker.handler import training_command
from tests.conftest import write_jsonl

SECRET = "hf_DialectSecret42"


@pytest.fixture
def job_file(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Capital of Tusello?", "output": "Yorren."}] * 8)
    args = {
        "base_model": str(tiny_model_dir),
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "adapter": "lora",
        "lora_r": 8,
        "lora_target_modules": ["q_proj"],
        "sequence_len": 256,
        "micro_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 0.001,
    }
    job = {"input": {"user_id": "alice", "model_id": "m", "credentials": {"hf_token": SECRET}, "args": args}}

    def write(**changes):
        path = tmp_path / "job.json"
        path.write_text(json.dumps({"input": {**job["input"], **changes}}))
        return path

    return write


def test_a_job_is_told_apart_by_its_only_key():
    assert detect({"input": {"args": {}}}) == "worker"
    with pytest.raises(Exception, match="no config dialect"):
        detect({"input": {}, "id": "x"})


def test_convert_shows_the_args_as_native_without_the_credentials(job_file, capsys, caplog):
    assert main(["convert", str(job_file(run_id=""))]) == 0
    captured, notices = capsys.readouterr(), caplog.text
    native = yaml.safe_load(captured.out)
    assert native["peft_conf"]["peft_kwargs"]["r"] == 8
    assert native["run_conf"]["resume_from_checkpoint"] == "auto"  # a job submitted again resumes its run
    assert SECRET not in captured.out + captured.err + notices
    assert "input.credentials: ignored outside the worker" in notices
    assert "input.run_id: empty: the worker names the new run by the job's id" in notices


def test_problems_are_reported_at_the_keys_of_the_job(job_file, capsys, tiny_model_dir):
    args = yaml.safe_load(job_file().read_text())["input"]["args"]
    bad = {**args, "lora_r": "sixteen", "micro_batch_sise": 2, "hub_model_id": "not a repo"}
    assert main(["validate", str(job_file(user_id="a/b", args=bad))]) == 2
    err = capsys.readouterr().err
    assert "input.user_id: must be 1 to 128 letters" in err
    assert "input.args.lora_r: must be a whole number, got 'sixteen'" in err
    assert "input.args.micro_batch_sise: unknown key; did you mean 'micro_batch_size'?" in err
    assert "input.args.hub_model_id: must be a hub repository id such as user/model-name" in err
    assert main(["validate", str(job_file(args=args))]) == 0


def test_the_worker_pushes_so_the_training_process_does_not(job_file):
    data = json.loads(job_file().read_text())
    data["input"]["args"]["hub_model_id"] = "alice/tiny"
    native = translate(data, "worker").native
    assert "push_to_hub" not in native["training_args"] and "hub_model_id" not in native["training_args"]


def test_the_docs_table_is_the_dialects_own():
    page = (DOCS / "worker.md").read_text(encoding="utf-8")
    assert page == with_table(page, "worker"), "run: python -m finetuning.config.dialects.docs"


@pytest.mark.parametrize(
    ("rl", "kind", "command"), [("dpo", "chatml.intel", "dpo"), ("kto", "llama3.ultra", "dpo"), (None, "alpaca", "sft")]
)
def test_the_worker_runs_a_preference_job_with_the_preference_command(rl, kind, command):
    args = {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": kind}], "learning_rate": 1e-5}
    job = {"input": {"user_id": "u", "model_id": "m", "run_id": "r", "args": {**args, **({"rl": rl} if rl else {})}}}
    assert training_command(job) == command
