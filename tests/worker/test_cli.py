"""`finetuning worker`: the runpod SDK's own flags pass through (`--test_input` runs one job and exits), other
commands still refuse flags they do not know, and without the runpod package the error says how to install it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from finetuning.cli import main


def run_worker(tmp_path, *flags: str, code: str | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "FINETUNING_WORKER_ROOT": str(tmp_path / "runs")}
    environment.pop("RUNPOD_LOG_LEVEL", None)
    command = ["-c", code] if code else ["-m", "finetuning.cli", "worker", *flags]
    return subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )


def test_test_input_runs_one_job_and_fails_it_without_showing_its_credentials(tmp_path):
    job = {
        "input": {
            "user_id": "../bob",
            "model_id": "m",
            "credentials": {"hf_token": "hf_TestInputSecret", "wandb_api_key": "wandb-test-input-secret"},
            "args": {"base_model": "some/model"},
        }
    }
    result = run_worker(tmp_path, "--test_input", json.dumps(job))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the SDK's exit code for a failed job
    assert "Job local_test failed with error: error:\n  input.user_id: must be 1 to 128 letters" in output
    assert "hf_TestInputSecret" not in output and "wandb-test-input-secret" not in output
    assert not (tmp_path / "runs").exists()  # nothing was created for a job that did not validate


def test_without_runpod_the_worker_says_how_to_install_it(tmp_path):
    code = "import sys; sys.modules['runpod'] = None; from finetuning.cli import main; sys.exit(main(['worker']))"
    result = run_worker(tmp_path, code=code)
    assert result.returncode == 2
    assert "worker: the runpod package is not installed" in result.stderr
    assert "pip install 'finetuning[worker]'" in result.stderr


def test_other_commands_refuse_the_sdk_flags(capsys):
    with pytest.raises(SystemExit) as info:
        main(["schema", "--rp_serve_api"])
    assert info.value.code == 2
    assert "unrecognized arguments: --rp_serve_api" in capsys.readouterr().err
