"""Each job's work in a process of its own, with the job's credentials in that process's environment only.

The worker itself never trains and never puts a credential into its own environment: a crash, an out-of-memory
kill or a hung run ends that process, not the worker, and the next job's process starts from the worker's clean
environment, so one user's token is never visible to the next. The process's output is copied, with every
credential replaced by ***, into the run's log and the worker's log; its progress records come through the
progress file (worker/progress.py), read while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import PROGRESS_VARIABLE, ProgressReader

logger = logging.getLogger("finetuning.worker")

CREDENTIAL_VARIABLES = ("WANDB_API_KEY", "HF_TOKEN")
POLL_SECONDS = 0.5  # how often the progress file is read while the process runs
STOP_GRACE_SECONDS = 300.0  # after SIGTERM (a run past its time limit saves a checkpoint first), then SIGKILL
TAIL_LINES = 400  # the output kept in memory to read the process's outcome from
LINE_LIMIT = 1 << 20  # a longer line (a progress bar redrawn with \r) is copied in pieces


class Redactor:
    """Replaces each credential's value with *** in a text (the longest first, so no part of one is left)."""

    def __init__(self, secrets: Iterable[str]):
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def child_environment(base: Mapping[str, str], credentials: Mapping[str, str], progress: Path | None) -> dict:
    """The process's environment: the worker's, with the job's credentials (a job without one gets the worker's
    own, as its operator configured it, or none) and, for a training process, where to write its progress."""
    environment = {**base, **credentials, "PYTHONUNBUFFERED": "1"}
    if progress is not None:
        environment[PROGRESS_VARIABLE] = str(progress)
    return environment


@dataclass
class ChildOutcome:
    """How the process ended: its exit code (negative: the signal that killed it), its last output lines (already
    redacted) and whether the worker stopped it for running past its time limit."""

    returncode: int
    output: list[str]
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def killed_by(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


async def run_child(
    command: list[str],
    *,
    cwd: Path,
    environment: Mapping[str, str],
    log_path: Path,
    redact: Redactor,
    progress: ProgressReader | None = None,
    on_progress: Callable[[dict[str, Any]], None] = lambda record: None,
    timeout: float | None = None,
) -> ChildOutcome:
    """Run `command` to its end, copying its output (stdout and stderr) into `log_path` and passing each new
    progress record to `on_progress`. Past `timeout` seconds it gets SIGTERM, then SIGKILL after a grace period;
    if the job is cancelled, likewise. Its own subprocesses (data workers) are ended with it."""
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=str(cwd),
        env=dict(environment),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its process group: what it leaves behind is ended with it
        limit=LINE_LIMIT,
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    copying = asyncio.create_task(_copy_output(process.stdout, log_path, redact, tail))
    timed_out = False
    try:
        timed_out = await _wait(process, started, timeout, progress, on_progress)
    except asyncio.CancelledError:
        await _stop(process)
        raise
    finally:
        _end_group(process.pid)
        await copying
        if progress is not None:
            for record in progress.new_records():
                on_progress(record)
    returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
    return ChildOutcome(returncode, list(tail), timed_out, time.monotonic() - started)


async def _wait(process, started: float, timeout: float | None, progress, on_progress) -> bool:
    """Wait for the process, reading progress meanwhile; True when it had to be stopped for its time limit."""
    while True:
        exited = await _exited(process, POLL_SECONDS)
        if progress is not None:
            for record in progress.new_records():
                on_progress(record)
        if exited:
            return False
        if timeout is not None and time.monotonic() - started > timeout:
            logger.warning("the training process ran past its time limit (%.0f s): stopping it", timeout)
            await _stop(process)
            return True


async def _exited(process, seconds: float) -> bool:
    """Whether the process exited within `seconds`. Not `process.wait()`: that also waits for its output pipe to
    close, which a subprocess it left behind (a data worker of a killed run) keeps open."""
    deadline = time.monotonic() + seconds
    while process.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(min(0.05, seconds))
    return process.returncode is not None


async def _stop(process) -> None:
    """SIGTERM (a training process finishes its step and saves a checkpoint), SIGKILL if it is still there later."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    if not await _exited(process, STOP_GRACE_SECONDS):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await _exited(process, STOP_GRACE_SECONDS)


def _end_group(pid: int) -> None:
    """SIGKILL what is left of the process's group (its data workers, when it was killed): the group outlives its
    leader only while a member lives, so this reaches nothing else."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _copy_output(stream, log_path: Path, redact: Redactor, tail: deque[str]) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than LINE_LIMIT: what is buffered, as a line of its own
                line = await stream.read(LINE_LIMIT)
            if not line:
                break
            text = redact(line.decode("utf-8", errors="replace").rstrip("\n"))
            log.write(text + "\n")
            log.flush()
            tail.append(text)
            logger.info("| %s", text)
