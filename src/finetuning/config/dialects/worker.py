"""The worker-job dialect (seed 002): a serverless job, `{"input": {user_id, model_id, run_id, credentials, args}}`.

A job file runs with every command, as the worker runs it: `finetuning validate job.json` checks the job before
it is submitted, `finetuning sft job.json` trains it here. `input` is checked as the worker checks it (the ids,
`args` required; worker/jobs.py), `input.args` is translated by the axolotl dialect and its problems and notices
are reported at `input.args.<key>`. The credentials never enter the native config: outside the worker they are
ignored, with a notice (the worker hands them to the training process's environment). A job resumes its run from
the last checkpoint when submitted again, so `run_conf.resume_from_checkpoint` is `auto` unless `args` says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from finetuning.config.dialects.builder import Context, Key, Translation
from finetuning.worker.jobs import ID_RULE, input_problems

TELL_TALE = "input as the only key (a worker job)"
ARGS_DIALECT = "axolotl"  # the option language of a job's args (seed 002)
ARGS = "input.args."

KEYS = (
    Key("input.user_id", "accepted", f"the first directory level of the run in the worker; {ID_RULE}"),
    Key("input.model_id", "accepted", "the second directory level of the run in the worker; the same rule"),
    Key(
        "input.run_id",
        "accepted",
        "the third directory level; empty: a new run named by the job id; the same ids again resume the run",
    ),
    Key(
        "input.credentials.wandb_api_key",
        "accepted",
        "the worker sets WANDB_API_KEY for the job's training process only; ignored outside the worker (notice)",
    ),
    Key(
        "input.credentials.hf_token",
        "accepted",
        "the worker sets HF_TOKEN for the job's training and push processes only; ignored outside the worker (notice)",
    ),
    Key("input.args", "translated", "the run's options, translated by the axolotl dialect (docs/dialects/axolotl.md)"),
    Key(
        "input.args.hub_model_id",
        "accepted",
        "the worker pushes the final model or adapter there after training (needs input.credentials.hf_token); "
        "outside the worker nothing is pushed (notice)",
    ),
)
HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def matches(data: Mapping[str, Any]) -> bool:
    return list(data) == ["input"]


def translate(data: Mapping[str, Any], context: Context) -> Translation:
    """The job's args as a native config; the job's own problems (ids, a missing `args`) come first."""
    from finetuning.config import dialects  # the registry imports this module

    job = data["input"]
    problems = input_problems(job)
    notices = _notices(job)
    args = job.get("args") if isinstance(job, Mapping) else None
    if not isinstance(args, Mapping):
        return Translation({}, notices, {}, problems)
    problems += _hub_problems(args)
    inner = dialects.translate(
        {key: value for key, value in args.items() if key != "hub_model_id"}, ARGS_DIALECT, context
    )
    native = dict(inner.native)
    run_conf = native.setdefault("run_conf", {})
    if isinstance(run_conf, dict) and args.get("auto_resume_from_checkpoints") is not False:
        run_conf.setdefault("resume_from_checkpoint", "auto")  # submitting a job again resumes its run
    return Translation(
        native,
        notices + [at_args(line) for line in inner.notices],
        {native_path: ARGS + source for native_path, source in inner.source_paths.items()},
        problems + [at_args(line) for line in inner.problems],
    )


def at_args(line: str) -> str:
    """A problem or notice of the args' dialect (`lora_r: ...`) at the key the job has it (`input.args.lora_r: ...`)."""
    path, sep, _ = line.partition(": ")
    return ARGS + line if sep and path and " " not in path else line


def _hub_problems(args: Mapping[str, Any]) -> list[str]:
    """hub_model_id is the worker's (it pushes after training), so checked here, not by the args' dialect."""
    repo = args.get("hub_model_id")
    if repo is None or (isinstance(repo, str) and HUB_REPO.fullmatch(repo)):
        return []
    return [f"{ARGS}hub_model_id: must be a hub repository id such as user/model-name, got {repo!r}"]


def _notices(job: Any) -> list[str]:
    if not isinstance(job, Mapping):
        return []
    notices = []
    credentials = job.get("credentials")
    if isinstance(credentials, Mapping) and any(credentials.values()):
        notices.append(
            "input.credentials: ignored outside the worker (it hands them to the job's training process as "
            "WANDB_API_KEY / HF_TOKEN); set those variables yourself to use them here"
        )
    if not job.get("run_id"):
        notices.append("input.run_id: empty: the worker names the new run by the job's id")
    if isinstance(job.get("args"), Mapping) and job["args"].get("hub_model_id"):
        notices.append(
            f"{ARGS}hub_model_id: the worker pushes the final model after training; a job file run with "
            "`finetuning sft` pushes nothing"
        )
    return notices
