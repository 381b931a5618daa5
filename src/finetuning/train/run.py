"""The steps every method's recipe shares, in the order a recipe calls them.

run = start_run(cfg)                  batch plan, seed, pre-checks
tokenizer, markers, added = prepare_tokenizer(cfg)
... method-specific data ...
model = load_policy(cfg, tokenizer, run)
... method-specific trainer ...
result = finish_run(trainer, cfg, tokenizer, markers, report, run)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import dump_resolved_config
from ..data.templates import get_template
from ..errors import UserError
from ..model.loading import ModelSetupError, apply_peft, check_vocabulary_fits, expand_vocabulary, load_model
from ..model.tokenizer import load_tokenizer, setup_tokenizer
from ..paths import resolve_user_path
from ..tracking.mlflow import MlflowOptions, apply_mlflow, config_params_callback, finish_mlflow, resolve_mlflow
from ..tracking.report import METRICS_FILE, MetricsFileCallback, write_run_report
from ..tracking.wandb import apply_wandb, finish_wandb
from .arguments import distribute_on_cpu
from .batch_size import BatchPlan
from .checkpoints import (
    AtomicCheckpoints,
    clear_previous_outputs,
    last_complete_checkpoint,
)
from .determinism import apply_determinism, restore_determinism
from .distributed import is_main_process, num_processes
from .interrupt import GracefulStop, ShieldedDataWorkers
from .preflight import check_before_loading, training_length
from .saving import save_final
from .token_count import ResumableTokenCount

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Global command-line options of a training command."""

    num_preprocess_workers: int | None = None
    mlflow: MlflowOptions = MlflowOptions()


@dataclass
class RunState:
    plan: BatchPlan
    output_dir: Path
    resume_from: str | None
    training_args: dict  # cfg.training_args with report_to settled for MLflow / W&B
    started: float
    environment_before: dict[str, str | None]  # variables the tracking set-up changed, as they were
    data_fingerprint: str  # stored with each checkpoint, compared on resume (data.inputs.data_fingerprint)


def start_run(cfg, options: RunOptions) -> RunState:
    """Batch plan, tracking, seeding and the checks that need no model; fails before anything heavy is loaded."""
    from transformers import set_seed

    started = time.perf_counter()
    batch = cfg.batchsize_conf
    plan, resume_from, fingerprint = check_before_loading(cfg)
    if resume_from is not None:  # here, not in resolve_resume: `validate` resolves it too, and only would resume
        logger.info("resuming from %s", resume_from)
    logger.info(
        "batch: %d process(es) x %d per device x %d accumulation = %d",
        num_processes(),
        plan.per_device_train_batch_size,
        plan.gradient_accumulation_steps,
        batch.total_train_batch_size,
    )
    if "use_cpu" not in cfg.training_args and distribute_on_cpu():
        logger.info("%d processes and no GPU: distributed on CPU (gloo; use_cpu: true)", num_processes())
    output_dir = Path(cfg.training_args["output_dir"])
    if resume_from is None and cfg.overwrite_output_dir and is_main_process():
        clear_previous_outputs(resolve_user_path(output_dir), cfg.run_conf.final_checkpoint_name)
    before = dict(os.environ)
    training_args = apply_mlflow(resolve_mlflow(options.mlflow, cfg.tracking, os.environ), cfg.training_args)
    training_args = apply_wandb(cfg.wandb, training_args)
    apply_determinism(cfg.run_conf.determinism)  # before CUDA starts; torch settings: restore_determinism()
    changed = {key for key in set(before) | set(os.environ) if before.get(key) != os.environ.get(key)}
    # TensorBoard (report_to: tensorboard) writes where Silogen configs said: training_args.logging_dir, $LOGS_PATH
    # or ./logs; transformers 5 takes that from the environment, no longer from TrainingArguments.
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", cfg.logging_dir)
    set_seed(cfg.training_args.get("seed", 42))
    changed_before = {key: before.get(key) for key in changed}
    return RunState(plan, output_dir, resume_from, training_args, started, changed_before, fingerprint)


def prepare_tokenizer(cfg):
    """Load the tokenizer and install the named template; returns (tokenizer, markers, tokens added)."""
    tokenizer = load_tokenizer(cfg.run_conf)
    markers, added = setup_tokenizer(tokenizer, get_template(cfg.data_conf.chat_template_name), cfg.data_conf)
    return tokenizer, markers, added


def log_data_report(report) -> None:
    logger.info(
        "data: %d training / %d validation examples, %d tokens (%d trained)",
        report.train_examples,
        report.eval_examples,
        report.train_tokens,
        report.trained_tokens,
    )


def load_policy(cfg, tokenizer, run: RunState, new_base_name: str | None = None, allow_vocabulary_growth=True):
    """Base model (+ resized vocabulary, + adapter), set up so that what it saves loads anywhere (saving.prepare_policy).
    With an adapter on a resized model, the resized base is saved once to `output_dir/new_base_name`: adapters can
    only be loaded or merged onto the base they were trained on."""
    quantized = cfg.quant_conf.quantization_type != "no-quantization"
    check_vocabulary_fits(cfg.run_conf, tokenizer, quantized)
    model = load_model(cfg.run_conf, cfg.quant_conf, num_processes())
    embedding_rows = model.get_input_embeddings().weight.shape[0]
    if not allow_vocabulary_growth and len(tokenizer) > embedding_rows:
        raise ModelSetupError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embeddings only {embedding_rows}: this method "
            "cannot grow the vocabulary; start from a model saved together with this tokenizer (e.g. an SFT output)"
        )
    vocab_expanded = expand_vocabulary(model, tokenizer, quantized)
    new_base = None
    if vocab_expanded and cfg.peft_conf.peft_type != "NO_PEFT" and new_base_name:
        new_base = run.output_dir / new_base_name
    from .saving import prepare_policy

    def wrap(base):
        return apply_peft(base, cfg.peft_conf, vocab_expanded, quantized)

    return prepare_policy(model, tokenizer, cfg, wrap, new_base, resuming=run.resume_from is not None)


def build_trainer(trainer_class, **kwargs):
    """Construct a TRL trainer that saves checkpoints atomically (train/checkpoints.py) and whose data workers leave
    stop signals to it (train/interrupt.py); its argument checks (e.g. a loss type that needs label_smoothing) are
    user errors."""
    mixins = (AtomicCheckpoints, ShieldedDataWorkers, ResumableTokenCount)  # + num_tokens kept across resumes
    engine_class = type(trainer_class.__name__, (*mixins, trainer_class), {})
    try:
        return engine_class(**kwargs)
    except ValueError as error:
        raise UserError(f"training_args: {error}") from None


@dataclass(frozen=True)
class RunResult:
    """How a training command ended: finished (final_dir) or stopped by a signal (checkpoint to resume from)."""

    final_dir: Path | None
    stopped_by: str | None = None
    checkpoint: Path | None = None
    step: int = 0
    max_steps: int = 0


def finish_run(trainer, cfg, tokenizer, markers, report, run: RunState) -> RunResult:
    """Train (resuming per run_conf), save the final model + inference tokenizer + resolved config, then the run
    report (metrics.jsonl, loss_curve.png, summary.md in output_dir, and a short table). A SIGTERM/SIGINT during
    training saves a checkpoint at the next step boundary and returns without the final save."""
    resolved = dump_resolved_config(cfg)
    trainer.add_callback(MetricsFileCallback(run.output_dir / METRICS_FILE))
    if "mlflow" in (trainer.args.report_to or []):
        trainer.add_callback(config_params_callback(resolved))
    trainer.data_fingerprint = run.data_fingerprint
    trainer.training_length = training_length(cfg)
    stop = GracefulStop()
    trainer.add_callback(stop)
    with stop:  # also covers the final save: a signal then lets it finish instead of cutting it short
        trainer.train(resume_from_checkpoint=run.resume_from)
        interrupted = stop.interrupted(trainer.state)
        if interrupted:
            saved = last_complete_checkpoint(run.output_dir)
            logger.warning(
                "training stopped by %s at step %d; checkpoint: %s", stop.stopped_by, trainer.state.global_step, saved
            )
        else:
            saved = run.output_dir / cfg.run_conf.final_checkpoint_name
            save_final(trainer, tokenizer, saved, markers.assistant_end, resolved)
    # a stopped run gets its report too: the loss curve so far, and where it was saved
    write_run_report(trainer, report, saved or run.output_dir, time.perf_counter() - run.started, resolved)
    _end_tracking(trainer, run, status="KILLED" if interrupted else "FINISHED")
    if interrupted:
        return RunResult(None, stop.stopped_by, saved, trainer.state.global_step, trainer.state.max_steps)
    return RunResult(saved, step=trainer.state.global_step, max_steps=trainer.state.max_steps)


def _end_tracking(trainer, run: RunState, status: str = "FINISHED") -> None:
    finish_mlflow(trainer.args.report_to, status, trainer.args.output_dir)
    finish_wandb(trainer.args.report_to)
    _restore_environment(run.environment_before)
    restore_determinism()


def _restore_environment(previous: dict[str, str | None]) -> None:
    """Undo the tracking variables of this run, so a later run in the same process starts from the user's own."""
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
