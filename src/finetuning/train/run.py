"""The stages every method's recipe shares, in the order a recipe calls them (sft.py, dpo.py):

with training_run(cfg, options) as run:        check, set up; undone however the block ends (train/lifecycle.py)
    tokenizer, markers, added = prepare_tokenizer(cfg)
    ... method-specific data ...
    args = training_config(ConfigClass, cfg, run, ...)
    model = load_policy(cfg, tokenizer, run)
    trainer = build_trainer(TrainerClass, model=model, args=args, ...)
    train(trainer, run)
    save(trainer, run, tokenizer, markers)
    evaluation = evaluate(cfg, run)            eval_conf's benchmarks on the saved model (evaluation/)
    report(trainer, run, data_report, evaluation)
return run.result
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..data.templates import get_template
from ..errors import UserError
from ..model.loading import ModelSetupError, apply_peft, check_vocabulary_fits, expand_vocabulary, load_model
from ..model.tokenizer import add_run_tokens, load_tokenizer, setup_tokenizer
from ..tracking.mlflow import MlflowOptions, config_params_callback
from ..tracking.report import METRICS_FILE, MetricsFileCallback, write_run_report
from ..worker.progress import progress_callback_from_environment
from .arguments import build_training_config
from .checkpoints import AtomicCheckpoints, last_complete_checkpoint
from .deepspeed import deepspeed_requested, prepare_deepspeed_start
from .distributed import is_main_process, num_processes
from .evaluation import evaluation_mixins
from .fsdp import FsdpOnEveryPlatform, fsdp_requested
from .interrupt import GracefulStop, ShieldedDataWorkers
from .lifecycle import RunResult, TrainingRun
from .saving import save_final
from .schedulers import EngineSchedulers
from .stopping import LOSS_WATCHDOG, log_early_stop, stopping_callbacks, tripped_watchdog
from .token_count import ResumableTokenCount

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Global command-line options of a training command."""

    num_preprocess_workers: int | None = None
    mlflow: MlflowOptions = MlflowOptions()


def prepare_tokenizer(cfg):
    """Load the tokenizer, set run_conf's tokens and install the named template; returns (tokenizer, markers, tokens
    the template added). Preference training cannot learn new tokens: run_conf's are refused there at once."""
    tokenizer = load_tokenizer(cfg.run_conf)
    if (run_added := add_run_tokens(tokenizer, cfg.run_conf)) and cfg.method != "sft":
        raise ModelSetupError(
            f"run_conf.special_tokens / added_tokens: {run_added} are new to the tokenizer, and {cfg.method} cannot "
            "learn new tokens (they start untrained in the policy and the reference); train them with `finetuning "
            "sft` first and start from its model, or use tokens the tokenizer has (e.g. pad_token: its eos)"
        )
    markers, added = setup_tokenizer(tokenizer, get_template(cfg.data_conf.chat_template_name), cfg.data_conf)
    return tokenizer, markers, added


def training_config(config_class, cfg, run: TrainingRun, **method_settings):
    """The TRL arguments object of this run (`config_class`: SFTConfig, DPOConfig, KTOConfig). Built before the model:
    argument errors (e.g. bf16 on a machine without it) are reported without loading anything."""
    return build_training_config(
        config_class,
        run.training_args,
        cfg.overrides,
        run.plan,
        announce=False,  # the pre-flight built (and described) the same arguments
        **method_settings,
    )


def log_data_report(report) -> None:
    """One line on what the data came to, before the model loads."""
    logger.info(
        "data: %d training / %d validation examples, %d tokens (%d trained); too long: %d dropped, %d truncated",
        report.train_examples,
        report.eval_examples,
        report.train_tokens,
        report.trained_tokens,
        sum(report.dropped_too_long.values()),
        sum(report.truncated.values()),
    )


def load_policy(cfg, tokenizer, run: TrainingRun, new_base_name: str | None = None, allow_vocabulary_growth=True):
    """Base model (+ resized vocabulary, + adapter), set up so that what it saves loads anywhere (saving.prepare_policy).
    With an adapter on a resized model, the resized base is saved once to `output_dir/new_base_name`: adapters can
    only be loaded or merged onto the base they were trained on."""
    quantized = cfg.quant_conf.quantization_type != "no-quantization"
    check_vocabulary_fits(cfg.run_conf, tokenizer, quantized)
    zero = deepspeed_requested(run.training_args)
    prepare_deepspeed_start(run.training_args)  # its process group before the model loads (train/deepspeed.py)
    fsdp = fsdp_requested(run.training_args)
    model = load_model(cfg.run_conf, cfg.quant_conf, num_processes(), fsdp=fsdp, deepspeed=zero)
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
        model = apply_peft(base, cfg.peft_conf, vocab_expanded, quantized)
        if getattr(cfg, "spectrum", None) is not None:  # train only the chosen matrices (model/spectrum.py)
            from ..model.spectrum import apply_spectrum

            apply_spectrum(model, cfg.spectrum, run.output_dir, is_main_process(), vocab_expanded)
        return model

    return prepare_policy(model, tokenizer, cfg, wrap, new_base, resuming=run.resume_from is not None)


def build_trainer(trainer_class, **kwargs):
    """Construct a TRL trainer that saves checkpoints atomically (train/checkpoints.py) and whose data workers leave
    stop signals to it (train/interrupt.py); its argument checks (e.g. a loss type that needs label_smoothing) are
    user errors."""
    # + num_tokens kept across resumes; our schedulers (train/schedulers.py); SFT: token-weighted eval_loss
    # (train/evaluation.py); FSDP sharded on CPU too, never silently DDP (train/fsdp.py)
    mixins = (
        FsdpOnEveryPlatform,
        AtomicCheckpoints,
        ShieldedDataWorkers,
        ResumableTokenCount,
        EngineSchedulers,
        *evaluation_mixins(trainer_class),
    )
    trainer_with_mixins = type(trainer_class.__name__, (*mixins, trainer_class), {})
    try:
        return trainer_with_mixins(**kwargs)
    except ValueError as error:
        raise UserError(f"training_args: {error}") from None


def train(trainer, run: TrainingRun) -> None:
    """`trainer.train()`, resuming from run.resume_from. From here to the end of `save`, a SIGTERM / SIGINT finishes
    the step under way, saves a checkpoint and ends training (train/interrupt.py); run.result then says where."""
    trainer.add_callback(MetricsFileCallback(run.output_dir / METRICS_FILE))
    progress = progress_callback_from_environment()  # a run started by the worker reports progress to it
    if progress is not None:
        trainer.add_callback(progress)
    run.report_to = list(trainer.args.report_to or [])  # what the run's end closes (train/lifecycle.py)
    if "mlflow" in run.report_to:
        trainer.add_callback(config_params_callback(run.resolved_config, on_run=_record_mlflow_run(run)))
    trainer.data_fingerprint = run.data_fingerprint
    trainer.training_length = run.training_length
    stop = run.stop_window.enter_context(GracefulStop())
    trainer.add_callback(stop)
    stopping = stopping_callbacks(run.stopping)  # the loss watchdog, early stopping (train/stopping.py)
    for callback in stopping:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=run.resume_from)
    watchdog = tripped_watchdog(stopping)
    if watchdog is not None or stop.interrupted(trainer.state):
        checkpoint = last_complete_checkpoint(run.output_dir)
        step, max_steps = trainer.state.global_step, trainer.state.max_steps
        stopped_by = LOSS_WATCHDOG if watchdog is not None else stop.stopped_by
        logger.warning("training stopped by %s at step %d; checkpoint: %s", stopped_by, step, checkpoint)
        error = watchdog.message() if watchdog is not None else None
        run.result = RunResult(None, stopped_by, checkpoint, step, max_steps, error=error)
    else:
        log_early_stop(stopping, trainer.state)


def _record_mlflow_run(run: TrainingRun):
    def record(run_id: str) -> None:
        run.mlflow_run_id = run_id

    return record


def save(trainer, run: TrainingRun, tokenizer, markers) -> None:
    """The final model + inference tokenizer + resolved config, atomically to run.final_dir; a run stopped by a signal
    has its checkpoint already and saves nothing more. A signal during this save lets it finish, then the stop
    window closes."""
    try:
        if run.result is None:  # not stopped
            save_final(trainer, tokenizer, run.final_dir, markers.assistant_end, run.resolved_config)
            run.result = RunResult(run.final_dir, step=trainer.state.global_step, max_steps=trainer.state.max_steps)
    finally:
        run.stop_window.close()


def evaluate(cfg, run: TrainingRun) -> dict | None:
    """eval_conf's benchmarks on the final model, once it is saved (main process; a stopped run has no final model
    and is not evaluated). A failing benchmark is a warning and a line in eval_results.json, never the run's failure
    (evaluation/runner.py). Returns the results, or None when nothing ran."""
    if cfg.eval_conf is None or run.result is None or run.result.final_dir is None or not is_main_process():
        return None
    from ..evaluation.runner import EVAL_RESULTS_FILE, run_benchmarks
    from ..evaluation.tracking import log_to_trackers
    from ..paths import resolve_user_path

    local_base = resolve_user_path(cfg.run_conf.model)
    base = str(local_base) if local_base.exists() else cfg.run_conf.model  # an adapter's base, for the merge
    results = run_benchmarks(cfg.eval_conf, run.result.final_dir, base, run.output_dir)
    log_to_trackers(results, run.report_to, run.mlflow_run_id, run.output_dir / EVAL_RESULTS_FILE)
    return results


def report(trainer, run: TrainingRun, data_report, evaluation: dict | None = None) -> None:
    """The run report: metrics.jsonl, loss_curve.svg, summary.md in output_dir, and a short table. A stopped run gets
    one too: the loss curve so far, and where it was saved. `evaluation`: the benchmarks' results, if any ran."""
    saved = (run.result.final_dir or run.result.checkpoint) if run.result is not None else None
    write_run_report(
        trainer,
        data_report,
        saved or run.output_dir,
        time.perf_counter() - run.started,
        run.resolved_config,
        evaluation=evaluation,
    )
