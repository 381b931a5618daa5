"""MLflow tracking section (`tracking`)."""

from __future__ import annotations

from typing import Any

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
