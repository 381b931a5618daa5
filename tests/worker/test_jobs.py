"""The job schema and the run layout: ids that name directories and nothing else, `args` required, credentials never
shown in a problem, outputs kept inside the run's directory, one job at a time per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetuning.errors import UserError
from finetuning.worker.jobs import input_problems, parse_input, run_name_from_job_id
from finetuning.worker.layout import exclusive_run, run_layout, worker_root

GOOD = {"user_id": "alice", "model_id": "llama-3.2-1b", "run_id": "run.1", "args": {"base_model": "m"}}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("user_id", "../bob", "must be 1 to 128 letters"),
        ("user_id", "a/b", "got 'a/b'"),
        ("model_id", "a..b", "no '..'"),
        ("model_id", "", "must not be empty"),
        ("run_id", ".hidden", "starting with a letter or digit"),
        ("run_id", "x" * 129, "must be 1 to 128"),
        ("user_id", 7, "must be a valid string"),
    ],
)
def test_an_id_that_is_not_a_plain_name_is_an_error_naming_the_field(field, value, message):
    (problem,) = input_problems({**GOOD, field: value})
    assert problem.startswith(f"input.{field}: ") and message in problem


def test_every_problem_is_listed_at_once_and_args_are_required():
    problems = input_problems({"user_id": "..", "model_id": "m", "credentals": {}})
    assert problems == [
        "input.user_id: must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, and no "
        "'..', got '..'",
        "input.args: required key is missing",
        "input.credentals: unknown key; did you mean 'credentials'?",
    ]
    assert input_problems(None) == [
        "input: must be a mapping with user_id, model_id, run_id, credentials, args, got nothing"
    ]


def test_a_credential_of_the_wrong_type_is_reported_without_its_value():
    (problem,) = input_problems({**GOOD, "credentials": {"hf_token": ["hf_secret_value"]}})
    assert problem.startswith("input.credentials.hf_token: ") and "hf_secret_value" not in problem
    spec = parse_input({**GOOD, "credentials": {"hf_token": "hf_abc", "wandb_api_key": ""}})
    assert "hf_abc" not in repr(spec)
    assert spec.credentials.environment() == {"HF_TOKEN": "hf_abc"}  # an empty key sets nothing


def test_an_empty_run_id_names_a_new_run_by_the_job_id():
    spec = parse_input({**GOOD, "run_id": ""})
    assert spec.resolved("sync-1f2e").run_id == "sync-1f2e"
    assert parse_input(GOOD).resolved("sync-1f2e").run_id == "run.1"
    assert run_name_from_job_id("a/b..c d") == "a-b-c-d"
    assert run_name_from_job_id(None) == "job"


def test_the_root_is_the_variable_then_the_runpod_volume_then_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    volume = tmp_path / "volume"
    assert worker_root({"FINETUNING_WORKER_ROOT": "custom"}, volume) == tmp_path / "custom"
    assert worker_root({}, volume) == tmp_path / "worker-runs"
    volume.mkdir()
    assert worker_root({}, volume) == volume / "fine-tuning"


def test_outputs_stay_inside_the_run_directory(tmp_path):
    layout = run_layout(tmp_path, "alice", "model", "run")
    assert layout.run_dir == layout.output_dir == tmp_path / "alice" / "model" / "run"
    inside = run_layout(tmp_path, "alice", "model", "run", "./outputs/lora-out")
    assert inside.output_dir == layout.run_dir / "outputs" / "lora-out"
    for outside in ("../../bob/model/run", "/tmp/elsewhere", "outputs/../../x"):
        with pytest.raises(UserError, match=r"input\.args\.output_dir: .* is outside this run's directory"):
            run_layout(tmp_path, "alice", "model", "run", outside)
    link = layout.run_dir / "link"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "bob")
    with pytest.raises(UserError, match="outside"):
        run_layout(tmp_path, "alice", "model", "run", "link/out")
    with pytest.raises(UserError, match="the worker's own directory"):
        run_layout(tmp_path, "alice", "model", "run", "worker")


def test_one_job_at_a_time_trains_a_run(tmp_path: Path):
    lock = tmp_path / "lock"
    busy = pytest.raises(UserError, match="input.run_id: run 'run' is being trained by another job")
    with exclusive_run(lock, "run"), busy, exclusive_run(lock, "run"):
        pass
    with exclusive_run(lock, "run"):  # free again once the first job ended
        pass
