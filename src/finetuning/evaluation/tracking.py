"""The evaluation's numbers to the run's trackers, as `eval/<benchmark>/<metric>`.

By the time the benchmarks run, transformers' MLflow callback has ended the MLflow run that training logged to:
the metrics (and eval_results.json) go to that run by id, as the run report does (tracking/mlflow.py). The W&B run
is still open (it is closed when the run ends, tracking/wandb.py): the numbers go to its history and summary. A
tracker that fails is a warning: the results are on disk already.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .runner import tracked_metrics

logger = logging.getLogger(__name__)


def log_to_trackers(results: dict, report_to: list[str], mlflow_run_id: str | None, results_file: Path) -> None:
    metrics = tracked_metrics(results)
    if "mlflow" in report_to and mlflow_run_id is not None:
        try:
            import mlflow

            client = mlflow.MlflowClient()
            for name, value in metrics.items():
                client.log_metric(mlflow_run_id, name, value)
            if results_file.is_file():
                client.log_artifact(mlflow_run_id, str(results_file))
        except Exception as error:  # noqa: BLE001 - a server gone away must not fail a finished run
            logger.warning("MLflow: could not log the evaluation results: %s", error)
    if "wandb" in report_to and metrics:
        try:
            import wandb

            if wandb.run is not None:
                wandb.run.log(metrics)
                wandb.run.summary.update(metrics)
        except Exception as error:  # noqa: BLE001
            logger.warning("W&B: could not log the evaluation results: %s", error)
