"""Where a job's run lives: `$FINETUNING_WORKER_ROOT/<user_id>/<model_id>/<run_id>/`.

One directory per run, named by the job's validated ids, so that users of one endpoint never see or overwrite each
other's outputs and the same ids find the same run again (to resume it). The training process works in it: its
checkpoints, final model, report, tokenization cache and logs all land there. The worker's own records of the job
(the config the training process ran, its log, its progress) are in `worker/` inside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuning.errors import UserError

ROOT_VARIABLE = "FINETUNING_WORKER_ROOT"
RUNPOD_VOLUME = Path("/runpod-volume")  # where a RunPod endpoint mounts its network volume
LOCAL_ROOT = Path("worker-runs")


def worker_root(environ: dict[str, str] | None = None, volume: Path = RUNPOD_VOLUME) -> Path:
    """$FINETUNING_WORKER_ROOT; else `fine-tuning/` on the RunPod network volume when one is mounted (outputs
    outlive the worker); else ./worker-runs. Absolute, so that a training process in another directory agrees."""
    environ = os.environ if environ is None else environ
    if environ.get(ROOT_VARIABLE):
        return Path(environ[ROOT_VARIABLE]).expanduser().resolve()
    if volume.is_dir():
        return volume / "fine-tuning"
    return LOCAL_ROOT.resolve()


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run."""

    run_dir: Path  # root / user_id / model_id / run_id: the training process's working directory
    output_dir: Path  # the trainer's output_dir: run_dir, or a directory inside it named by args.output_dir

    @property
    def records(self) -> Path:
        """The worker's files about the job (never the credentials): config, log, progress, lock."""
        return self.run_dir / "worker"

    @property
    def config(self) -> Path:
        return self.records / "job.yaml"

    @property
    def log(self) -> Path:
        return self.records / "training.log"

    @property
    def progress(self) -> Path:
        return self.records / "progress.jsonl"

    @property
    def lock(self) -> Path:
        return self.records / "lock"


def run_layout(root: Path, user_id: str, model_id: str, run_id: str, requested_output: Any = None) -> RunLayout:
    """The run's paths. `requested_output` (args.output_dir, as the user wrote it) may name a directory inside the
    run (relative paths are relative to it: `./outputs/lora-out` is `<run>/outputs/lora-out`); one that resolves
    outside the run (absolute elsewhere, `..`, a link out) is a job error."""
    run_dir = (root / user_id / model_id / run_id).resolve()
    if requested_output is None or requested_output == "":
        return RunLayout(run_dir, run_dir)
    if not isinstance(requested_output, str):
        raise UserError(f"input.args.output_dir: must be a path inside the run directory, got {requested_output!r}")
    output_dir = (run_dir / Path(requested_output).expanduser()).resolve()
    if not output_dir.is_relative_to(run_dir):
        raise UserError(
            f"input.args.output_dir: {requested_output!r} is outside this run's directory {run_dir}; the worker keeps "
            "each run's outputs in <user_id>/<model_id>/<run_id>/: leave output_dir out, or give a relative path"
        )
    if output_dir.is_relative_to(run_dir / "worker"):
        raise UserError(f"input.args.output_dir: {requested_output!r} is the worker's own directory; choose another")
    return RunLayout(run_dir, output_dir)


@contextmanager
def exclusive_run(lock: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock while its job runs: a second job with the same ids at the same time (another worker of
    the endpoint on the same volume) would train into the same checkpoints; it is refused instead."""
    import fcntl

    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"input.run_id: run {run_id!r} is being trained by another job right now; submit this one when that "
                "one has ended (it then resumes the run), or give it another run_id"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
