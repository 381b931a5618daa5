"""The runpod handler: one job in, one result (or `{"error": ...}`) out.

validate the job (worker/jobs.py) → find its run's directory and lock it (worker/layout.py) → write the job, without
its credentials, as the config the training process runs → `finetuning sft|dpo` in a process of its own with the
credentials in its environment (worker/child.py), its progress posted with `runpod.serverless.progress_update` →
the result from what it left (worker/outcome.py) → with `hub_model_id`, the final model pushed in another such
process (worker/push.py). Every error is returned as the job's error, in the words the command line uses, and with
every credential masked; nothing here raises into the SDK (which would report a traceback instead).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError, user_error_text
from .child import CREDENTIAL_VARIABLES, Redactor, child_environment, run_child
from .jobs import JobInput, parse_input
from .layout import RunLayout, exclusive_run, run_layout, worker_root
from .outcome import JobFailed, completed_result, final_model
from .progress import ProgressReader

logger = logging.getLogger("finetuning.worker")

TIMEOUT_VARIABLE = "FINETUNING_WORKER_JOB_TIMEOUT"  # seconds a job's training may take (unset: no limit)


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The runpod handler (`runpod.serverless.start({"handler": handler})`)."""
    started = time.monotonic()
    raw = job.get("input")
    redact = Redactor(_secret_values(raw))
    try:
        spec = parse_input(raw).resolved(job.get("id"))
        return await run_job(spec, started, _progress_poster(job), redact)
    except UserError as error:
        return {"error": redact(user_error_text(error))}
    except JobFailed as failure:
        return {"error": redact(str(failure))}
    except Exception as error:  # noqa: BLE001 - a bug must fail this job, not the worker, and show no credential
        logger.error("job %s: %s", job.get("id"), redact(traceback.format_exc()))
        return {"error": redact(f"the worker failed: {type(error).__name__}: {error}")}
    finally:
        if isinstance(raw, dict):  # the SDK keeps the job (and may log it): the credentials leave it
            raw.pop("credentials", None)


def _secret_values(raw: Any) -> list[str]:
    credentials = raw.get("credentials") if isinstance(raw, dict) else None
    values = credentials.values() if isinstance(credentials, dict) else []
    return [value for value in values if isinstance(value, str)]


async def run_job(
    spec: JobInput, started: float, on_progress: Callable[[dict], None], redact: Redactor
) -> dict[str, Any]:
    """Train the job's run and return its result; `UserError` / `JobFailed` for a job that cannot succeed."""
    layout = run_layout(worker_root(), spec.user_id, spec.model_id, spec.run_id, spec.args.get("output_dir"))
    credentials = {**_worker_credentials(), **spec.credentials.environment()}
    hub_model_id = spec.args.get("hub_model_id")
    if hub_model_id and "HF_TOKEN" not in credentials:
        raise UserError("input.args.hub_model_id: pushing to the hub needs input.credentials.hf_token")
    layout.records.mkdir(parents=True, exist_ok=True)
    with exclusive_run(layout.lock, spec.run_id):
        command = write_job_config(spec, layout)
        layout.progress.unlink(missing_ok=True)  # this attempt's progress only
        progress = ProgressReader(layout.progress)
        outcome = await run_child(
            [sys.executable, "-m", "finetuning.cli", "--dialect", "worker", command, str(layout.config)],
            cwd=layout.run_dir,
            environment=child_environment(_clean_environment(), credentials, layout.progress),
            log_path=layout.log,
            redact=redact,
            progress=progress,
            on_progress=on_progress,
            timeout=_timeout(),
        )
        final_dir = final_model(outcome, layout, progress.last)
        if hub_model_id:
            await push(final_dir, str(hub_model_id), layout, credentials, redact)
    return completed_result(final_dir, layout, time.monotonic() - started)


def write_job_config(spec: JobInput, layout: RunLayout) -> str:
    """Write the job (no credentials; its output_dir the run's) as the config the training process runs, in the
    worker dialect, so that its problems are reported at the keys of the job (`input.args.lora_r`); returns the
    command that runs it: `dpo` for a preference method (`rl: dpo|kto`), else `sft`."""
    job = spec.without_credentials()
    job["args"] = {**spec.args, "output_dir": str(layout.output_dir)}
    document = {"input": job}
    layout.config.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return training_command(document)


def training_command(document: dict[str, Any]) -> str:
    """`finetuning dpo` for a config of a preference method, `finetuning sft` otherwise (also for a config that does
    not translate: the training process reports its problems)."""
    from ..config.dialects import environment_context, translate
    from ..config.loading import ConfigError

    try:
        method = translate(document, "worker", environment_context()).native.get("method")
    except ConfigError:
        return "sft"
    return "dpo" if method in ("dpo", "kto") else "sft"


async def push(final_dir: Path, repo_id: str, layout: RunLayout, credentials: dict, redact: Redactor) -> None:
    """The final model (or adapter) to the hub, by a process of its own that alone has the token."""
    outcome = await run_child(
        [sys.executable, "-m", "finetuning.worker.push", str(final_dir), repo_id],
        cwd=layout.run_dir,
        environment=child_environment(_clean_environment(), credentials, None),
        log_path=layout.log,
        redact=redact,
    )
    if outcome.returncode != 0:
        from .outcome import user_error_block

        raise JobFailed(user_error_block(outcome.output) or f"pushing to {repo_id} failed; its log: {layout.log}")


def _clean_environment() -> dict[str, str]:
    """The worker's environment without credentials: the job's own are added for its processes only."""
    return {name: value for name, value in os.environ.items() if name not in CREDENTIAL_VARIABLES}


def _worker_credentials() -> dict[str, str]:
    """The credentials the worker's operator set in its environment: a job without its own uses these."""
    return {name: os.environ[name] for name in CREDENTIAL_VARIABLES if os.environ.get(name)}


def _timeout() -> float | None:
    value = os.environ.get(TIMEOUT_VARIABLE)
    return float(value) if value else None


def _progress_poster(job: dict[str, Any]) -> Callable[[dict], None]:
    """Each progress record to the platform (runpod.serverless.progress_update) and one line to the worker's log."""

    def post(record: dict) -> None:
        logger.info(
            "job %s: step %s of %s, loss %s, learning rate %s, about %s s left",
            job.get("id"),
            *(_shown(record.get(key)) for key in ("step", "total_steps", "loss", "learning_rate", "eta_seconds")),
        )
        try:
            from runpod.serverless import progress_update
        except ImportError:  # the handler called without the SDK (tests of the handler itself)
            return
        progress_update(job, record)

    return post


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
