"""MLflow: the CLI > config > environment precedence case by case, report_to handling, and real runs that log to a
file:// store and to a live `mlflow server` on 127.0.0.1, read back with the MLflow client: metrics, the resolved
config, the run's name and the run report attached as artifacts. Every store lives in tmp_path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from finetuning.cli import main
from finetuning.config.tracking import FinetuningTrackingConfig
from finetuning.errors import UserError
from finetuning.tracking.mlflow import MlflowOptions, MlflowSettings, apply_mlflow, resolve_mlflow
from tests.conftest import REPO, sft_config, write_yaml

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True, scope="module")
def no_store_in_the_repository():
    """MLflow 3's default store is ./mlflow.db: a run that missed its tracking URI would write into the checkout
    (one did, and got committed). Every store of these tests is in tmp_path."""
    stores = [REPO / name for name in ("mlflow.db", "mlruns", "mlartifacts")]
    before = {path for path in stores if path.exists()}
    yield
    assert {path for path in stores if path.exists()} == before


CLI = MlflowOptions("http://cli:5000", "cli-exp", "True")
CONFIG = FinetuningTrackingConfig(
    mlflow_server_uri="file:///config", experiment_name="config-exp", hf_mlflow_log_artifacts="False", run_name="r1"
)
ENV = {"MLFLOW_TRACKING_URI": "file:///env", "MLFLOW_EXPERIMENT_NAME": "env-exp", "HF_MLFLOW_LOG_ARTIFACTS": "TRUE"}
NO_CLI = MlflowOptions()


@pytest.mark.parametrize(
    ("options", "tracking", "environ", "expected"),
    [
        (NO_CLI, None, {}, ("disabled", None, None, False)),
        (NO_CLI, None, ENV, ("env", "file:///env", "env-exp", True)),
        (NO_CLI, CONFIG, {}, ("config", "file:///config", "config-exp", False)),
        (NO_CLI, CONFIG, ENV, ("config", "file:///config", "config-exp", False)),  # config beats environment
        (CLI, None, {}, ("cli", "http://cli:5000", "cli-exp", True)),
        (CLI, CONFIG, ENV, ("cli", "http://cli:5000", "cli-exp", True)),  # command line beats both
        (MlflowOptions("http://cli:5000"), CONFIG, ENV, ("cli", "http://cli:5000", "config-exp", False)),
        (NO_CLI, CONFIG.model_copy(update={"mlflow_server_uri": ""}), ENV, ("env", "file:///env", "config-exp", False)),
        (CLI, CONFIG, {**ENV, "DISABLE_MLFLOW_INTEGRATION": "TRUE"}, ("disabled", None, None, False)),
    ],
    ids=[
        "nothing",
        "env-only",
        "config-only",
        "config-over-env",
        "cli-only",
        "cli-over-all",
        "cli-uri-config-experiment",
        "empty-config-uri-falls-to-env",
        "disable-wins",
    ],
)
def test_precedence(options, tracking, environ, expected):
    settings = resolve_mlflow(options, tracking, environ)
    assert (settings.source, settings.tracking_uri, settings.experiment_name, settings.log_artifacts) == expected


def test_run_id_and_name_come_from_the_config():
    tracking = CONFIG.model_copy(update={"run_id": "abc123"})
    settings = resolve_mlflow(NO_CLI, tracking, {})
    assert (settings.run_id, settings.run_name) == ("abc123", "r1")


ON = MlflowSettings("config", "file:///x", "exp", run_id="abc", run_name="r1", log_artifacts=False)
OFF = MlflowSettings("disabled")


@pytest.mark.parametrize(
    ("settings", "report_to", "expected"),
    [
        (ON, None, ["mlflow"]),
        (ON, ["tensorboard"], ["mlflow", "tensorboard"]),
        (ON, "none", "none"),
        (ON, "all", "all"),
        (OFF, ["mlflow", "tensorboard"], ["tensorboard"]),
        (OFF, "mlflow", "none"),
        (OFF, None, None),
    ],
)
def test_report_to(settings, report_to, expected):
    args = {} if report_to is None else {"report_to": report_to}
    assert apply_mlflow(settings, args, environ={}).get("report_to") == expected


def test_report_to_all_without_mlflow_is_an_error():
    with pytest.raises(UserError, match="'all' includes MLflow"):
        apply_mlflow(OFF, {"report_to": "all"}, environ={})


def test_environment_set_for_the_callback():
    environ: dict = {}
    args = apply_mlflow(ON, {}, environ)
    assert environ == {
        "MLFLOW_TRACKING_URI": "file:///x",
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_FLATTEN_PARAMS": "TRUE",
        "HF_MLFLOW_LOG_ARTIFACTS": "FALSE",
        "MLFLOW_EXPERIMENT_NAME": "exp",
        "MLFLOW_RUN_ID": "abc",
    }
    assert args["run_name"] == "r1"
    disabled_env: dict = {}
    apply_mlflow(OFF, {"report_to": ["mlflow"]}, disabled_env)
    assert disabled_env == {}  # nothing that would outlive this run in the process


def mlflow_config(tmp_path: Path, model_dir: Path, tracking: dict | None, steps: int = 4, **training_args) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = sft_config(tmp_path, model_dir, training_args={"max_steps": steps, **training_args})
    del config["training_args"]["report_to"]  # let the engine decide
    if tracking is not None:
        config["tracking"] = tracking
    return write_yaml(tmp_path / "c.yaml", config)


def train(tmp_path: Path, model_dir: Path, tracking: dict | None, *cli: str, steps: int = 4, **training_args) -> int:
    return main([*cli, "sft", str(mlflow_config(tmp_path, model_dir, tracking, steps, **training_args))])


def artifact_names(client, run) -> set[str]:
    return {artifact.path for artifact in client.list_artifacts(run.info.run_id)}


REPORT = {"summary.md", "loss_curve.svg", "metrics.jsonl"}


def only_run(uri: str, experiment: str):

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # reading a file:// store back, as a user of seed 004 would
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.slow
def test_a_run_logs_metrics_and_the_resolved_config_to_a_file_store(tmp_path, tiny_model_dir):
    uri = (tmp_path / "mlruns").as_uri()
    tracking = {"mlflow_server_uri": uri, "experiment_name": "tiny", "run_name": "first"}

    assert train(tmp_path, tiny_model_dir, tracking) == 0
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the run's tracking set-up does not outlive it
    client, run = only_run(uri, "tiny")
    assert run.info.run_name == "first"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [point.step for point in history] == [1, 2, 3, 4]
    assert run.data.params["config.data_conf.chat_template_name"] == "chat-ml"
    assert run.data.params["config.batchsize_conf.total_train_batch_size"] == "8"
    assert run.data.params["learning_rate"] == "0.003"  # TrainingArguments, logged by transformers
    assert artifact_names(client, run) >= REPORT  # the run report, attached before the run ended
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_the_run_is_named_after_training_args_run_name_when_tracking_names_none(tmp_path, tiny_model_dir):
    uri = (tmp_path / "mlruns").as_uri()
    tracking = {"mlflow_server_uri": uri, "experiment_name": "named"}
    assert train(tmp_path, tiny_model_dir, tracking, steps=1, run_name="from-training-args") == 0
    _, run = only_run(uri, "named")
    assert run.info.run_name == "from-training-args"


@pytest.mark.slow  # a training process of its own, stopped by a real SIGTERM
def test_a_stopped_run_ends_killed_with_the_report_it_has(tmp_path, tiny_model_dir):
    from tests.reliability.conftest import run_with_faults

    uri = (tmp_path / "mlruns").as_uri()
    tracking = {"mlflow_server_uri": uri, "experiment_name": "stopped"}
    config = mlflow_config(tmp_path, tiny_model_dir, tracking, steps=20, output_dir=str(tmp_path / "stopped-run"))
    stopped = run_with_faults(config, "micro:3:TERM")  # a scheduler's SIGTERM during step 3
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "Training stopped by SIGTERM at step 3" in stopped.stdout
    client, run = only_run(uri, "stopped")
    assert (run.info.status, run.info.run_name) == ("KILLED", "stopped-run")
    assert artifact_names(client, run) >= REPORT
    summary = client.download_artifacts(run.info.run_id, "summary.md", str(tmp_path / "downloaded"))
    assert "checkpoint-3" in Path(summary).read_text()  # the report of the run so far: where it was saved


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(store_uri: str, cwd: Path, *options: str):
    """`mlflow ui` as the README runs it, over `store_uri`, on a free port of 127.0.0.1; stopped by its process group
    at the end. `cwd` is where the server keeps anything of its own (default ./mlartifacts)."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--backend-store-uri", store_uri, "--workers", "1", *options],
        cwd=cwd,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"},  # the README's command: for file:// stores
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the server's workers are stopped with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):  # bounded wait: at most 3 min (the server imports slowly on a busy machine)
            if process.poll() is not None:
                pytest.fail(f"mlflow ui exited with {process.returncode} over {store_uri}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow ui did not start")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow server over a SQLite store of its own, for runs that log over HTTP."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with live_server(
        f"sqlite:///{root / 'mlflow.db'}", root, "--default-artifact-root", (root / "art").as_uri()
    ) as url:
        yield url


def rest(url: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    """One call of MLflow's REST API (what the UI itself reads), GET with `query` or POST with `body`."""
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


LOCAL_STORES = {
    "sqlite": lambda root: f"sqlite:///{root / 'mlflow.db'}",  # MLflow's default store kind now
    "file": lambda root: (root / "mlruns").as_uri(),  # what Silogen configs use
}


@pytest.mark.slow  # a training, then a real `mlflow ui` started over what it wrote
@pytest.mark.parametrize("kind", sorted(LOCAL_STORES))
def test_the_readme_ui_command_shows_a_run_of_a_local_store(kind, tmp_path, tiny_model_dir, monkeypatch):
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    store = LOCAL_STORES[kind](tmp_path / "store")
    assert train(tmp_path, tiny_model_dir, {"mlflow_server_uri": store, "experiment_name": "local"}) == 0
    assert not list(started_in.iterdir())  # the store keeps the run's artifacts: no ./mlruns where training ran

    server_dir = tmp_path / "server"
    server_dir.mkdir()
    with live_server(store, server_dir) as url:
        experiment = rest(url, "experiments/get-by-name", experiment_name="local")["experiment"]
        (found,) = rest(url, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        run = rest(url, "runs/get", run_id=found["info"]["run_id"])["run"]
        history = rest(url, "metrics/get-history", run_id=found["info"]["run_id"], metric_key="loss")["metrics"]
        artifacts = rest(url, "artifacts/list", run_id=found["info"]["run_id"])
    params = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert (run["info"]["status"], run["info"]["run_name"]) == ("FINISHED", "out")
    assert [point["step"] for point in history] == [1, 2, 3, 4]
    assert {metric["key"] for metric in run["data"]["metrics"]} >= {"loss", "train_loss"}
    assert params["config.data_conf.chat_template_name"] == "chat-ml"
    assert params["learning_rate"] == "0.003"
    assert {item["path"] for item in artifacts["files"]} >= REPORT
    assert artifacts["root_uri"].startswith((tmp_path / "store").as_uri())  # beside the store, not in ./mlruns
    assert not list(server_dir.iterdir())  # the UI over a local store writes nothing of its own


@pytest.mark.slow
def test_cli_flags_log_to_a_live_server_and_resume_the_same_run(tmp_path, tiny_model_dir, mlflow_server):
    env_store = (tmp_path / "ignored").as_uri()

    os.environ["MLFLOW_TRACKING_URI"] = env_store  # the command line outranks it
    args = ("--mlflow-server-uri", mlflow_server, "--experiment-name", "served")
    assert train(tmp_path / "a", tiny_model_dir, None, *args, output_dir=str(tmp_path / "a" / "lora-run-7")) == 0
    client, run = only_run(mlflow_server, "served")
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 4
    assert not (tmp_path / "ignored").exists()
    assert run.info.run_name == "lora-run-7"  # nothing names the run: the output_dir's name, not "brave-cat-123"
    assert artifact_names(client, run) >= REPORT

    # a later run that names the run id continues it (e.g. after resuming from a checkpoint)
    tracking = {"mlflow_server_uri": mlflow_server, "experiment_name": "served", "run_id": run.info.run_id}
    assert train(tmp_path / "b", tiny_model_dir, tracking, steps=2) == 0
    client, again = only_run(mlflow_server, "served")
    assert again.info.run_id == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 6
    assert again.info.run_name == "lora-run-7"  # a continued run keeps its name
