"""One run lifecycle (train/lifecycle.py): two trainings in one process, as a worker running one user's job after
another's would, and the second sees nothing of the first — its hub token, MLflow / W&B / TensorBoard settings,
torch's determinism switch, an MLflow run left open — also when the first raised during training."""

from __future__ import annotations

import os

import pytest
import torch

from finetuning.cli import main
from finetuning.config import load_any_config
from finetuning.train.lifecycle import training_run
from finetuning.train.run import RunOptions
from tests.conftest import sft_config, write_yaml

mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")

LEAKY = ("HF_TOKEN", "MLFLOW_", "WANDB_", "TENSORBOARD_", "HF_MLFLOW_", "CUBLAS_WORKSPACE_CONFIG")


@pytest.fixture
def clean_environment(tmp_path, monkeypatch):
    """The user's environment has none of what the runs set; W&B writes its offline files into tmp_path."""
    for key in [key for key in os.environ if key.startswith(LEAKY)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-files"))  # the user's own setting: it stays
    (tmp_path / "wandb-files").mkdir()
    yield
    torch.use_deterministic_algorithms(False)  # whatever happened, never leak into later tests


def failing_first_config(tmp_path, model_dir, store: str) -> dict:
    """A run with everything that sets process state, which raises at its first evaluation (step 1): a metric for
    the best model that no evaluation computes is only found out by transformers during training."""
    config = sft_config(
        tmp_path / "first",
        model_dir,
        training_args={
            "max_steps": 3,
            "hub_token": "hf_FIRST_USERS_TOKEN",
            "eval_strategy": "steps",
            "eval_steps": 1,
            "metric_for_best_model": "accuracy",
        },
        run_conf={"determinism": "full"},
        tracking={"mlflow_server_uri": store, "experiment_name": "first-user"},
        wandb={"project": "first-user", "mode": "offline"},
    )
    config["data_conf"]["validation_data"] = {"type": "AUTO_SPLIT", "ratio": 0.1}
    del config["training_args"]["report_to"]  # the tracking sections turn MLflow and W&B on
    return config


def second_config(tmp_path, model_dir) -> dict:
    """Another user's job: no token, no tracking, nothing about determinism."""
    config = sft_config(tmp_path / "second", model_dir, training_args={"max_steps": 2})
    del config["training_args"]["report_to"]  # an MLflow URI left in the environment would turn MLflow on
    return config


def mlflow_runs(store: str, experiment: str) -> list:
    """The experiment's runs, read back as a user would (a file:// store needs MLFLOW_ALLOW_FILE_STORE to be read);
    the environment is left as it was."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = mlflow.MlflowClient(tracking_uri=store)
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        return [(run, client.get_metric_history(run.info.run_id, "loss")) for run in runs]
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


@pytest.mark.slow
def test_a_second_run_sees_nothing_of_a_first_that_raised(tmp_path, tiny_model_dir, clean_environment):
    store = (tmp_path / "mlruns").as_uri()  # a file:// store: the run also sets MLFLOW_ALLOW_FILE_STORE
    first = write_yaml(tmp_path / "first.yaml", failing_first_config(tmp_path, tiny_model_dir, store))
    before = dict(os.environ)

    with pytest.raises(KeyError, match="metric_for_best_model"):
        main(["sft", str(first)])

    assert dict(os.environ) == before  # no HF_TOKEN, MLFLOW_*, WANDB_*, TENSORBOARD_LOGGING_DIR, CUBLAS_* left
    assert not torch.are_deterministic_algorithms_enabled()  # `determinism: full` ended with the run
    assert mlflow.active_run() is None and wandb.run is None  # nothing left open for the next run to log into
    ((failed, losses),) = mlflow_runs(store, "first-user")
    assert failed.info.status == "FAILED" and len(losses) == 1  # it trained a step, then raised

    second = load_any_config(write_yaml(tmp_path / "second.yaml", second_config(tmp_path, tiny_model_dir)))
    with training_run(second, RunOptions()) as run:
        seen = dict(os.environ)  # what the second run's stages see
    assert seen.pop("TENSORBOARD_LOGGING_DIR") == second.logging_dir  # its own, not the first run's
    assert not [key for key in seen if key.startswith(LEAKY) and key not in before]

    assert main(["sft", str(tmp_path / "second.yaml")]) == 0  # and it trains, logging nowhere
    assert "mlflow" not in run.report_to and "mlflow" not in (run.training_args.get("report_to") or [])
    args = torch.load(tmp_path / "second" / "out" / "checkpoint-final" / "training_args.bin", weights_only=False)
    assert args.report_to in ([], ["none"], "none") and args.hub_token is None
    assert len(mlflow_runs(store, "first-user")) == 1
    assert dict(os.environ) == before


@pytest.mark.slow
def test_a_finished_run_leaves_no_settings_behind(tmp_path, tiny_model_dir, clean_environment):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        training_args={"max_steps": 2, "hub_token": "hf_FIRST_USERS_TOKEN"},
        tracking={"mlflow_server_uri": store, "experiment_name": "finished"},
    )
    del config["training_args"]["report_to"]
    before = dict(os.environ)
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    assert dict(os.environ) == before
    ((finished, losses),) = mlflow_runs(store, "finished")
    assert (finished.info.status, len(losses)) == ("FINISHED", 2) and mlflow.active_run() is None


@pytest.mark.parametrize("users_own", [None, "hf_USERS_OWN"])
def test_the_hub_token_is_handed_over_for_the_run_only(tmp_path, tiny_model_dir, clean_environment, users_own):
    """training_args.hub_token reaches huggingface_hub as HF_TOKEN while the run lasts; an HF_TOKEN the user set
    wins and stays."""
    if users_own:
        os.environ["HF_TOKEN"] = users_own
    config = sft_config(tmp_path, tiny_model_dir, training_args={"hub_token": "hf_FROM_THE_CONFIG"})
    cfg = load_any_config(write_yaml(tmp_path / "c.yaml", config))
    with training_run(cfg, RunOptions()) as run:
        assert os.environ["HF_TOKEN"] == (users_own or "hf_FROM_THE_CONFIG")
        assert "hub_token" not in run.training_args  # so no TrainingArguments (training_args.bin) holds it
    assert os.environ.get("HF_TOKEN") == users_own
