"""One training run as a context: `with training_run(cfg, options) as run:` ... the recipe's stages ... .

However the block ends — the run finishes, is stopped by a signal, or raises — leaving it puts the process back as
the run found it: the MLflow and W&B runs are ended (FAILED for a run that raised or that the loss watchdog stopped,
KILLED for one stopped by a signal), torch's determinism switches are as before, and every environment variable has
its value from before the run: the tracking settings, the hub token handed over as HF_TOKEN, TensorBoard's directory, and what the libraries set
meanwhile (TrainingArguments sets ACCELERATE_* variables for some options). A second run in the same process — a
test, a notebook, a worker running one user's job after another's — sees nothing of the first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import dump_resolved_config
from ..data.readers import forget_read_files
from ..paths import resolve_user_path
from ..tracking.mlflow import apply_mlflow, finish_mlflow, resolve_mlflow
from ..tracking.wandb import apply_wandb, finish_wandb
from .arguments import distribute_on_cpu
from .batch_size import BatchPlan
from .checkpoints import clear_previous_outputs
from .determinism import deterministic
from .distributed import is_main_process, num_processes
from .preflight import check_before_loading, training_length

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """How a training command ended: finished (final_dir) or stopped by a signal (checkpoint to resume from), or
    stopped as failed by the loss watchdog (train/stopping.py): `error` is then the user-error line to report."""

    final_dir: Path | None
    stopped_by: str | None = None
    checkpoint: Path | None = None
    step: int = 0
    max_steps: int = 0
    error: str | None = None


@dataclass
class TrainingRun:
    """What the stages of one run share (train/run.py: train, save, report), and what ending it must undo."""

    plan: BatchPlan
    output_dir: Path
    final_dir: Path  # output_dir / run_conf.final_checkpoint_name
    resume_from: str | None
    training_args: dict  # cfg.training_args with report_to settled for MLflow / W&B, the hub token taken out
    data_fingerprint: str  # stored with each checkpoint, compared on resume (data.inputs.data_fingerprint)
    training_length: dict  # stored with each checkpoint: a finished run is only finished for the same length
    resolved_config: dict  # the config as saved beside the model and logged to MLflow (secrets masked)
    started: float
    report_to: list[str] = field(default_factory=list)  # the trainer's integrations, set when training starts
    mlflow_run_id: str | None = None  # the MLflow run training logs to, once it started one (main process)
    stop_window: ExitStack = field(default_factory=ExitStack)  # the signal handlers of train() ... save()
    result: RunResult | None = None  # set by train() (stopped) or save() (finished)
    stopping: Any = None  # cfg.stopping: the callbacks train() adds (train/stopping.py)
    status: str = "FINISHED"  # how the tracking runs end


@contextmanager
def training_run(cfg, options) -> Iterator[TrainingRun]:
    """Check, set up and later undo one training run; `options` is the command line's RunOptions (train/run.py)."""
    environment = dict(os.environ)  # before the checks too: building TrainingArguments may set variables
    try:
        run = _start(cfg, options)
        with deterministic(cfg.run_conf.determinism), _quiet_unless_quantized(cfg):  # before CUDA / the model
            try:
                yield run
            except BaseException as error:
                run.status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
                raise
            finally:
                run.stop_window.close()  # signal handlers back, if the block raised between train() and save()
                _end_tracking(run)
    finally:
        restore_environment(environment)
        forget_read_files()  # the parsed data files of this run (read once, shared by the checks and the recipe)


@contextmanager
def _quiet_unless_quantized(cfg) -> Iterator[None]:
    """peft imports bitsandbytes whenever it is installed, and bitsandbytes warns at import about optional CPU
    kernels: news only to a run that quantizes. Its warnings are silenced for runs without quant_conf."""
    if cfg.quant_conf.quantization_type != "no-quantization":
        yield
        return
    bitsandbytes_log = logging.getLogger("bitsandbytes")
    level = bitsandbytes_log.level
    bitsandbytes_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bitsandbytes_log.setLevel(level)


def _start(cfg, options) -> TrainingRun:
    """Batch plan, resume target and every check that needs no model, then the outputs to replace, the tracking set-up,
    the hub token and the seed: fails before anything heavy is loaded."""
    from transformers import set_seed

    from ..preprocess import run_pending_preprocess

    started = time.perf_counter()
    run_pending_preprocess(cfg, options.num_preprocess_workers)  # a dataset data_conf.preprocess has yet to write
    plan, resume_from, fingerprint = check_before_loading(cfg)
    if resume_from is not None:  # here, not in resolve_resume: `validate` resolves it too, and only would resume
        logger.info("resuming from %s", resume_from)
    logger.info("batch: %s", plan.describe())
    if "use_cpu" not in cfg.training_args and distribute_on_cpu():
        logger.info("%d processes and no GPU: distributed on CPU (gloo; use_cpu: true)", num_processes())
    output_dir = Path(cfg.training_args["output_dir"])
    if resume_from is None and cfg.overwrite_output_dir and is_main_process():
        clear_previous_outputs(resolve_user_path(output_dir), cfg.run_conf.final_checkpoint_name)
    training_args = apply_mlflow(resolve_mlflow(options.mlflow, cfg.tracking, os.environ), cfg.training_args)
    training_args = apply_wandb(cfg.wandb, training_args)
    hand_over_hub_token(training_args)
    # TensorBoard (report_to: tensorboard) writes where Silogen configs said: training_args.logging_dir, $LOGS_PATH
    # or ./logs; transformers 5 takes that from the environment, no longer from TrainingArguments.
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", cfg.logging_dir)
    set_seed(cfg.training_args.get("seed", 42))
    return TrainingRun(
        plan=plan,
        output_dir=output_dir,
        final_dir=output_dir / cfg.run_conf.final_checkpoint_name,
        resume_from=resume_from,
        training_args=training_args,
        data_fingerprint=fingerprint,
        training_length=training_length(cfg),
        resolved_config=dump_resolved_config(cfg),
        started=started,
        stopping=cfg.stopping,
    )


def hand_over_hub_token(training_args: dict) -> None:
    """Move training_args.hub_token (in place) into HF_TOKEN, where huggingface_hub reads it: the Trainer pickles its
    arguments into every checkpoint (training_args.bin), so no file the run writes may hold it. An HF_TOKEN the user
    set wins and stays; the one set here is removed when the run ends, so the next job in the process never sees it."""
    token = training_args.pop("hub_token", None)
    if token:
        os.environ.setdefault("HF_TOKEN", token)


def _end_tracking(run: TrainingRun) -> None:
    """End the MLflow / W&B runs this run started. A tracking server gone away is a warning: it must not turn a
    finished training into a failure, nor hide the error a failed one raised."""
    status = run.status
    if run.result is not None and run.result.stopped_by:
        status = "FAILED" if run.result.error else "KILLED"
    try:
        if "mlflow" in run.report_to:
            finish_mlflow(run.mlflow_run_id, status, run.output_dir)
    except Exception as error:
        logger.warning("MLflow: could not end the run: %s", error)
    try:
        if "wandb" in run.report_to:
            finish_wandb(failed=status == "FAILED")
    except Exception as error:
        logger.warning("W&B: could not end the run: %s", error)


def restore_environment(before: Mapping[str, str]) -> None:
    """Put os.environ back as `before`: changed values reset, variables that were not there removed."""
    for key in set(os.environ) - set(before):
        os.environ.pop(key, None)
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
