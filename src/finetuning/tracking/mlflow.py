"""MLflow set-up as seed 004 describes it: command line > config `tracking` > environment, else disabled.

The Hugging Face `MLflowCallback` does the logging; this module decides whether it runs and with which server,
experiment, run and artifact settings, by setting the environment variables that callback reads and by adding
"mlflow" to (or removing it from) `training_args.report_to`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..train.distributed import is_main_process
from .reporting import add_reporter, add_run_name, report_to_list

logger = logging.getLogger(__name__)

TRUE_VALUES = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class MlflowSettings:
    """What the run will do with MLflow, and which source decided it ("cli", "config", "env" or "disabled")."""

    source: str
    tracking_uri: str | None = None
    experiment_name: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    log_artifacts: bool = False

    @property
    def enabled(self) -> bool:
        return self.source != "disabled"


@dataclass(frozen=True)
class MlflowOptions:
    """The global command-line flags of seed 004 (None: not given)."""

    server_uri: str | None = None
    experiment_name: str | None = None
    log_artifacts: str | None = None


def _flag(value: str | bool | None) -> bool:
    return str(value).strip().lower() in TRUE_VALUES


def resolve_mlflow(options: MlflowOptions, tracking, environ: Mapping[str, str]) -> MlflowSettings:
    """Precedence per setting: command line, then the config's `tracking`, then the environment.

    The server URI decides whether MLflow is on: none of the three → disabled. `DISABLE_MLFLOW_INTEGRATION=TRUE`
    in the environment turns it off whatever else says.
    """
    if _flag(environ.get("DISABLE_MLFLOW_INTEGRATION")):
        return MlflowSettings("disabled")
    config_uri = tracking.mlflow_server_uri if tracking is not None and tracking.mlflow_server_uri else None
    if options.server_uri:
        source, uri = "cli", options.server_uri
    elif config_uri:
        source, uri = "config", config_uri
    elif environ.get("MLFLOW_TRACKING_URI"):
        source, uri = "env", environ["MLFLOW_TRACKING_URI"]
    else:
        return MlflowSettings("disabled")
    config = tracking  # per setting, the config still outranks the environment
    experiment = options.experiment_name or (config.experiment_name if config else None)
    log_artifacts = options.log_artifacts or (config.hf_mlflow_log_artifacts if config else None)
    return MlflowSettings(
        source=source,
        tracking_uri=uri,
        experiment_name=experiment or environ.get("MLFLOW_EXPERIMENT_NAME"),
        run_id=(config.run_id if config else None) or environ.get("MLFLOW_RUN_ID"),
        run_name=config.run_name if config else None,
        log_artifacts=_flag(log_artifacts if log_artifacts is not None else environ.get("HF_MLFLOW_LOG_ARTIFACTS")),
    )


def apply_mlflow(
    settings: MlflowSettings, training_args: dict, environ: MutableMapping[str, str] | None = None
) -> dict:
    """Return training_args with report_to adjusted, and set the variables MLflowCallback reads."""
    # Looked up at call time, not bound as a default: libraries may replace os.environ (datasets' worker pools do).
    environ = os.environ if environ is None else environ
    args = dict(training_args)
    report_to = report_to_list(args.get("report_to"))
    if not settings.enabled:
        # Keeping "mlflow" out of report_to is what keeps transformers' MLflowCallback away. The engine does not set
        # DISABLE_MLFLOW_INTEGRATION itself: in a process that trains twice, the flag would outlive this run and
        # read as the user's on the next one.
        if report_to == ["all"]:
            raise UserError(
                "training_args.report_to: 'all' includes MLflow, which is off (no --mlflow-server-uri, "
                "tracking.mlflow_server_uri or MLFLOW_TRACKING_URI); list the integrations you want instead"
            )
        if report_to and "mlflow" in report_to:
            args["report_to"] = [name for name in report_to if name != "mlflow"] or "none"
            logger.warning("report_to: mlflow removed, since MLflow is not configured (see the README, MLflow)")
        return args
    add_run_name(add_reporter(args, "mlflow", "MLflow"), settings.run_name)
    environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    if is_file_store(settings.tracking_uri):
        # Seed 004 documents file:// stores; MLflow 3 refuses them unless asked to keep the file backend.
        environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif settings.tracking_uri.startswith("sqlite:") and is_main_process():
        keep_artifacts_beside(settings.tracking_uri, settings.experiment_name)
    environ["MLFLOW_FLATTEN_PARAMS"] = "TRUE"
    environ["HF_MLFLOW_LOG_ARTIFACTS"] = "TRUE" if settings.log_artifacts else "FALSE"
    if settings.experiment_name:
        environ["MLFLOW_EXPERIMENT_NAME"] = settings.experiment_name
    if settings.run_id:
        environ["MLFLOW_RUN_ID"] = settings.run_id  # continue that run (e.g. after a resume)
    logger.info(
        "MLflow (%s): %s, experiment %r",
        settings.source,
        _without_credentials(settings.tracking_uri),
        settings.experiment_name,
    )
    return args


def is_file_store(uri: str) -> bool:
    """A path or file:// URI: MLflow's file backend (./mlruns), which MLflow 3 keeps in maintenance mode."""
    return "://" not in uri or uri.startswith("file:")


def keep_artifacts_beside(uri: str, experiment_name: str | None) -> None:
    """Create the run's experiment in a SQLite store with its artifacts in `mlartifacts/` beside the database, as
    `mlflow server` lays out ./mlflow.db and ./mlartifacts.

    Left to MLflow, a new experiment of a sqlite:// store keeps its artifacts (here the run report) in ./mlruns of
    whatever directory the training started in, away from the store the user opens later. An experiment that
    exists keeps the location it has."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database is None or not database.name or database.name == ":memory:":
        return  # sqlite:// (in memory) or an unusual form: MLflow's own defaults
    database.parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(uri, (database.parent.resolve() / "mlartifacts").as_uri())  # makes "Default" if new
    name = experiment_name or "Default"
    if store.get_experiment_by_name(name) is None:
        store.create_experiment(name)


def _without_credentials(uri: str) -> str:
    from ..config.loading import mask_secrets

    return mask_secrets(uri)


def flatten(value, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} → {"a.b": "1"}; lists keep their index (`datasets.0.path`)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        return {prefix: str(value)}
    out: dict[str, str] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_params_callback(resolved_config: dict, on_run: Callable[[str], None] | None = None):
    """A TrainerCallback that logs the resolved config (secrets already masked), flattened, as run parameters, and
    names the run after its output_dir when nothing else names it. `on_run` is told the run's id: the run's end
    (finish_mlflow) goes to that run by id, whether training finished or raised.

    Added after transformers' MLflowCallback, so the run it started is active; parameters get a `config.` prefix
    to stay clear of the TrainingArguments that callback logs itself."""
    from transformers import TrainerCallback

    # Read now: mlflow.start_run deletes MLFLOW_RUN_ID from the environment when it continues that run.
    continues_a_run = bool(os.environ.get("MLFLOW_RUN_ID"))

    class ConfigParams(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            import mlflow

            if not state.is_world_process_zero or mlflow.active_run() is None:
                return
            if on_run is not None:
                on_run(mlflow.active_run().info.run_id)
            name = None if continues_a_run else default_run_name(args)
            if name:
                mlflow.set_tag("mlflow.runName", name)
            params = {f"config.{key}"[:250]: text[:6000] for key, text in flatten(resolved_config).items()}
            try:
                mlflow.log_params(params)
            except Exception as error:  # e.g. a resumed run that logged other values before
                logger.warning("MLflow: could not log the config as parameters: %s", error)

    return ConfigParams()


def default_run_name(args) -> str | None:
    """The output_dir's name, for a run nothing else names (MLflow would pick a random "brave-cat-123", which says
    nothing about which run it is); None when training_args.run_name (or tracking.run_name, copied there) names it.
    A continued run (MLFLOW_RUN_ID, tracking.run_id) keeps the name it has."""
    if args.run_name:
        return None
    return Path(args.output_dir).resolve().name or None


def finish_mlflow(
    run_id: str | None, status: str = "FINISHED", output_dir: str | os.PathLike[str] | None = None
) -> None:
    """Attach the run report from `output_dir` to MLflow run `run_id` (the one training logged to), so its page
    shows the loss curve and summary without a visit to the machine that trained, and give the run its final
    `status`: KILLED for a run stopped by a signal (it gets the report of what it did so far), FAILED for one that
    raised.

    transformers' MLflowCallback ends the run it started when training ends, before the report exists: the report
    goes to that run by id, and a stopped run is then marked KILLED. A run still open here (training raised, so the
    callback never ended it) is ended, so that a second training in the same process does not log into it. No
    `run_id` and no open run: training never reached MLflow (or not the main process), and nothing is touched — in
    particular not the run of an earlier job, which `mlflow.last_active_run()` would still return."""
    import mlflow

    active = mlflow.active_run()
    run_id = run_id or (active.info.run_id if active is not None else None)
    if run_id is None:
        return
    client = mlflow.MlflowClient()
    if output_dir is not None:
        _attach_report(client, run_id, Path(output_dir))
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)
    elif status != "FINISHED":
        client.set_terminated(run_id, status)


def _attach_report(client, run_id: str, output_dir: Path) -> None:
    """Log the report files that exist; a failed upload is a warning: the run's own files are already on disk."""
    from .report import LOSS_CURVE_FILE, METRICS_FILE, SUMMARY_FILE

    for name in (SUMMARY_FILE, LOSS_CURVE_FILE, METRICS_FILE):
        path = output_dir / name
        if not path.is_file():
            continue
        try:
            client.log_artifact(run_id, str(path))
        except Exception as error:  # a server gone away must not turn a finished training into a failure
            logger.warning("MLflow: could not attach %s to the run: %s", path, error)
