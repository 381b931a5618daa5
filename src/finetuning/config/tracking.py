"""Tracking sections: MLflow (`tracking`, seed 000) and Weights & Biases (`wandb`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from finetuning.config._base import StrictModel


class FinetuningTrackingConfig(StrictModel):
    """Settings that define how run details are logged."""

    mlflow_server_uri: str = Field(
        description="MLflow server URI. Can be local path. An empty string means: fall back to MLFLOW_TRACKING_URI."
    )
    experiment_name: str = Field(description="Experiment name that is used for MLFlow tracking")
    run_id: str | None = Field(None, description="Run id, to resume logging to previousely started run")
    run_name: str | None = Field(
        None,
        description=(
            "Run name, to give meaningful name to the run to be displayed in MLFlow UI. "
            "Used only when run_id is unspecified"
        ),
    )
    hf_mlflow_log_artifacts: str = Field("False", description="Whether to store model artifacts in MLFlow")

    @field_validator("hf_mlflow_log_artifacts", mode="before")
    @classmethod
    def _bool_to_str(cls, value: Any) -> Any:
        # The value ends up in the HF_MLFLOW_LOG_ARTIFACTS environment variable (a string), but YAML users
        # naturally write a boolean.
        if isinstance(value, bool):
            return str(value)
        return value


class WandbConfig(StrictModel):
    """Weights & Biases logging (the options of seeds 001/002: project, entity, run name, watch, log model).

    Adds "wandb" to `training_args.report_to` and sets the WANDB_* variables transformers' WandbCallback reads. The
    API key is never a config value: log in with `wandb login` or set WANDB_API_KEY in the environment.
    """

    project: str = Field(description="W&B project the run is logged to")
    entity: str | None = Field(None, description="W&B team or user that owns the project (default: your default)")
    run_name: str | None = Field(None, description="Display name of the run (default: training_args.run_name)")
    group: str | None = Field(None, description="Group runs together in the W&B UI")
    tags: list[str] = Field(default_factory=list, description="Tags of the run")
    watch: Literal["false", "gradients", "parameters", "all"] = Field(
        "false", description="Log gradients and/or parameters histograms (wandb.watch)"
    )
    log_model: Literal["false", "end", "checkpoint"] = Field(
        "false", description="Upload the model as a W&B artifact: at the end, or every checkpoint"
    )
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="online, offline (files written locally, `wandb sync` later) or disabled; default: WANDB_MODE"
    )
