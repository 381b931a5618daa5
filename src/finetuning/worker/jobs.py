"""The worker's job schema: `{"input": {user_id, model_id, run_id, credentials: {wandb_api_key, hf_token}, args}}`.

Strict on purpose: the ids become directory names on a volume shared by every user of the endpoint, so anything but
a plain name (`..`, `/`, an empty id, a number) is a job error naming the field, and `args` is required (the
seed-002 worker would have trained on defaults without it). Problems are reported as the native config's are
(`input.user_id: ...`, all at once); a credential's value is never shown in one. Pure data: the worker's handler
and the worker-job config dialect (config/dialects/worker.py) share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finetuning.errors import UserError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ID_RULE = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, and no '..'"
ID_FIELDS = ("user_id", "model_id", "run_id")


def id_problem(value: str) -> str | None:
    """Why `value` cannot name a directory of the worker's volume, or None when it can."""
    if not value:
        return "must not be empty"
    if ID_PATTERN.fullmatch(value) is None or ".." in value:
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"must be {ID_RULE}, got {shown!r}"
    return None


def run_name_from_job_id(job_id: Any) -> str:
    """A new run's name from the platform's job id (`sync-6e0e...`, `local_test`): characters a run id cannot have
    become '-', so that the run directory is always a plain name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", str(job_id or "job")).replace("..", "-").lstrip("._-")[:128]
    return name or "job"


class Credentials(BaseModel):
    """The job's secrets: handed to the training process's environment only (WANDB_API_KEY, HF_TOKEN)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    wandb_api_key: str | None = Field(None, repr=False, description="Weights & Biases API key (WANDB_API_KEY)")
    hf_token: str | None = Field(None, repr=False, description="Hugging Face token (HF_TOKEN): hub models, push")

    def environment(self) -> dict[str, str]:
        """The environment variables these credentials set (empty values set nothing)."""
        pairs = {"WANDB_API_KEY": self.wandb_api_key, "HF_TOKEN": self.hf_token}
        return {name: value for name, value in pairs.items() if value}

    def secrets(self) -> list[str]:
        return list(self.environment().values())


class JobInput(BaseModel):
    """A job's `input`. `run_id` empty or absent: a new run, named by the job id (`JobInput.resolved`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user_id: str = Field(description="Who the run belongs to: the first directory level of its outputs")
    model_id: str = Field(description="The user's model: the second directory level")
    run_id: str = Field("", description="The run: the third level; the same ids again resume that run")
    credentials: Credentials = Field(default_factory=Credentials)
    args: dict[str, Any] = Field(description="The run's options in the axolotl dialect (docs/dialects/axolotl.md)")

    @field_validator("user_id", "model_id")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        problem = id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("run_id")
    @classmethod
    def _plain_name_or_empty(cls, value: str) -> str:
        problem = id_problem(value) if value else None
        if problem is not None:
            raise ValueError(problem)
        return value

    def resolved(self, job_id: Any) -> JobInput:
        """The same input with its run named: the job id names a new run."""
        return self if self.run_id else self.model_copy(update={"run_id": run_name_from_job_id(job_id)})

    def without_credentials(self) -> dict[str, Any]:
        """The input as the training process's config file holds it: everything but the credentials."""
        return {"user_id": self.user_id, "model_id": self.model_id, "run_id": self.run_id, "args": self.args}


def input_problems(value: Any) -> list[str]:
    """Every problem of a job's `input`, each `input.path: message`; [] for a valid one."""
    if not isinstance(value, Mapping):
        return [f"input: must be a mapping with {', '.join(JobInput.model_fields)}, got {_kind(value)}"]
    try:
        JobInput.model_validate(dict(value))
    except ValidationError as error:
        from finetuning.config.loading import format_validation_error

        return [f"input.{line}" for line in format_validation_error(error, JobInput, dict(value))]
    return []


def parse_input(value: Any) -> JobInput:
    """A job's `input` validated; a `UserError` listing every problem otherwise."""
    problems = input_problems(value)
    if problems:
        raise UserError(problems)
    return JobInput.model_validate(dict(value))


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
