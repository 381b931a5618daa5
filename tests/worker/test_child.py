"""A job's process: its output copied with the credentials masked, its environment the worker's plus the job's
credentials only, and a process past its time limit (or whose job is cancelled) stopped, its subprocesses too."""

from __future__ import annotations

import asyncio
import sys

import psutil
import pytest

from finetuning.worker.child import Redactor, child_environment, run_child

SECRET = "hf_ChildSecret777"


def run(tmp_path, code: str, **options):
    return asyncio.run(
        run_child(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            environment=child_environment({"PATH": "/usr/bin:/bin"}, {"HF_TOKEN": SECRET}, tmp_path / "p.jsonl"),
            log_path=tmp_path / "worker" / "training.log",
            redact=Redactor([SECRET]),
            **options,
        )
    )


def gone(pid: int, seconds: float = 5.0) -> bool:
    """The process has ended (a zombie waiting for its new parent counts as ended)."""
    try:
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE:
            process.wait(timeout=seconds)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_the_credential_reaches_the_process_and_none_of_its_output(tmp_path):
    code = "import os; print('token', os.environ['HF_TOKEN'], os.environ['FINETUNING_PROGRESS_FILE']); exit(3)"
    outcome = run(tmp_path, code)
    assert outcome.returncode == 3 and outcome.killed_by is None
    assert outcome.output == [f"token *** {tmp_path / 'p.jsonl'}"]
    assert (tmp_path / "worker" / "training.log").read_text() == outcome.output[0] + "\n"


def test_a_process_past_its_time_limit_is_stopped_with_its_children(tmp_path):
    code = (
        "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(child.pid, flush=True); time.sleep(60)"
    )
    outcome = run(tmp_path, code, timeout=1.0)
    assert outcome.timed_out and outcome.killed_by == "SIGTERM" and outcome.seconds < 30
    assert gone(int(outcome.output[0]))  # the subprocess it started, which held its output pipe open


def test_a_cancelled_job_stops_its_process(tmp_path):
    async def cancel_soon():
        task = asyncio.ensure_future(
            run_child(
                [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                cwd=tmp_path,
                environment={"PATH": "/usr/bin:/bin"},
                log_path=tmp_path / "log",
                redact=Redactor([]),
            )
        )
        while not (tmp_path / "log").is_file() or "started" not in (tmp_path / "log").read_text():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    sleepers = [p for p in psutil.process_iter(["cmdline"]) if "time.sleep(60)" in " ".join(p.info["cmdline"] or [])]
    assert sleepers == []
