"""The run report: `metrics.jsonl` while training, then `loss_curve.svg`, `summary.md` and a console table at the end.

Everything goes into the Trainer's `output_dir`, next to the checkpoints, so that a finished (or interrupted) run
can be judged without TensorBoard or MLflow: the JSONL is the raw record, the SVG and the Markdown are for people.

Wiring (train/run.py: the recipe's train and report stages):

    trainer.add_callback(MetricsFileCallback(Path(trainer.args.output_dir) / METRICS_FILE))   # tracking/metrics_file.py
    trainer.train(...)
    ... save ...
    write_run_report(trainer, report, final_dir, seconds, dump_resolved_config(cfg))
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from .loss_curve import (  # noqa: F401 — LOSS_CURVE_FILE and the plotters are this module's public names too
    LOSS_CURVE_FILE,
    curve_title,
    plot_losses,
    plot_records,
)
from .metrics_file import (  # noqa: F401 — METRICS_FILE and metric_series are this module's public names too
    METRICS_FILE,
    MetricsFileCallback,
    metric_series,
    read_metrics,
)

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.md"

# --- the numbers -------------------------------------------------------------------------------------------------


def _values(history: list[dict], key: str) -> list[float]:
    return [entry[key] for entry in history if isinstance(entry.get(key), int | float)]


@dataclass
class RunNumbers:
    """What a run achieved, from `trainer.state` (the authoritative history, resumed part included)."""

    steps: int
    train_losses: list[float]
    eval_losses: list[float]
    train_runtime: float | None
    epochs: float
    tokens_per_second: float | None

    @classmethod
    def collect(cls, trainer, report, start_epoch: float = 0.0) -> RunNumbers:
        history = trainer.state.log_history
        runtimes = _values(history, "train_runtime")
        epochs = trainer.state.epoch or 0.0
        return cls(
            steps=trainer.state.global_step,
            train_losses=_values(history, "loss"),
            eval_losses=_values(history, "eval_loss"),
            train_runtime=runtimes[-1] if runtimes else None,
            epochs=epochs,
            tokens_per_second=_tokens_per_second(report.train_tokens, epochs - start_epoch, runtimes),
        )


def _tokens_per_second(train_tokens: int, epochs_run: float, runtimes: list[float]) -> float | None:
    """Tokens of the epochs run by the last `train()` call over its runtime; None when no tokens were counted or
    nothing ran."""
    if not train_tokens or not runtimes or runtimes[-1] <= 0 or epochs_run <= 0:
        return None
    return train_tokens * epochs_run / runtimes[-1]


def _loss_span(losses: list[float]) -> str:
    return f"{losses[0]:.4f} → {losses[-1]:.4f}" if losses else "not logged"


def _dropped(report) -> str:
    return _counts(report.dropped_too_long) or "0"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{what}: {count}" for what, count in counts.items())


def _truncated_rows(report) -> list[tuple[str, str]]:
    """A row counting the examples cut to max length, when the run truncates (length_handling: truncate), and one
    counting the duplicate rows dropped, when it deduplicates (data_conf.deduplicate)."""
    rows = [("truncated to max length", _counts(report.truncated))] if report.truncated else []
    deduplicated = getattr(report, "deduplicated", None)
    return rows + ([("duplicates dropped", _counts(deduplicated))] if deduplicated else [])


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}h {minutes:02d}m {rest:02d}s" if hours else f"{minutes}m {rest:02d}s"
    return f"{seconds:.1f}s ({clock})" if seconds >= 60 else f"{seconds:.1f}s"


# --- console table -----------------------------------------------------------------------------------------------


def print_run_summary(
    trainer,
    report,
    final_dir,
    wall_seconds: float,
    console: Console | None = None,
    numbers: RunNumbers | None = None,
    paths: dict[str, Path] | None = None,
    evaluation: dict | None = None,
) -> None:
    """The short table printed at the end of a run: what was trained, how it went, where it went (and the
    benchmarks' results, when eval_conf ran)."""
    numbers = numbers or RunNumbers.collect(trainer, report)
    rows = [
        (
            "training examples",
            f"{report.train_examples}" + (f" (+{report.eval_examples} validation)" if report.eval_examples else ""),
        ),
        ("dropped as too long", _dropped(report)),
        *_truncated_rows(report),
        # every method counts its tokens (KTO's as TRL's KTOTrainer tokenises them); 0 only for a report without them
        *(
            [("tokens per epoch", f"{report.train_tokens} ({report.trained_tokens} trained)")]
            if report.train_tokens
            else []
        ),
        *packing_rows(report, numbers),
        ("optimizer steps", f"{numbers.steps}"),
        ("training loss", _loss_span(numbers.train_losses)),
    ]
    if numbers.eval_losses:
        rows.append(("validation loss", f"{numbers.eval_losses[-1]:.4f}"))
    rows.append(("wall time", f"{wall_seconds:.1f}s"))
    if numbers.tokens_per_second is not None:
        rows.append(("tokens/s", f"{numbers.tokens_per_second:,.0f}"))
    if evaluation:
        from ..evaluation.results import evaluation_rows

        rows += [(f"eval: {label}", text) for label, text in evaluation_rows(evaluation)]
    rows.append(("saved to", str(final_dir)))
    rows += [(f"report: {name}", str(path)) for name, path in (paths or {}).items()]
    table = Table(title="run summary", show_header=False, title_justify="left")
    for key, value in rows:
        table.add_row(key, value)
    (console or Console()).print(table)


# --- summary.md --------------------------------------------------------------------------------------------------


def _get(config: dict, *keys: str) -> Any:
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _enum_text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _peft_text(peft_conf: dict) -> str:
    peft_type = str(peft_conf.get("peft_type", "?"))
    kwargs = peft_conf.get("peft_kwargs") or {}
    details = ", ".join(f"{key}={kwargs[key]}" for key in ("r", "lora_alpha") if key in kwargs)
    return f"{peft_type} ({details})" if details else peft_type


def config_rows(config: dict, args) -> list[tuple[str, str]]:
    """The config digest: the settings that tell runs apart. Batch, learning rate and length come from the
    Trainer's arguments, i.e. after batch planning and learning-rate overrides were applied."""
    per_device, accumulation, processes = (
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        args.world_size,
    )
    length = f"max_steps {args.max_steps}" if args.max_steps and args.max_steps > 0 else None
    return [
        ("method", str(config.get("method", "?"))),
        ("model", str(_get(config, "run_conf", "model"))),
        ("chat template", str(_get(config, "data_conf", "chat_template_name"))),
        ("PEFT", _peft_text(config.get("peft_conf") or {})),
        ("quantization", str(_get(config, "quant_conf", "quantization_type"))),
        (
            "batch",
            f"{per_device * accumulation * processes} total = {processes} process(es) × {per_device} per device × {accumulation} accumulation",
        ),
        ("learning rate", f"{args.learning_rate:g} ({_enum_text(args.lr_scheduler_type)} schedule)"),
        ("length", length or f"{args.num_train_epochs:g} epoch(s)"),
    ]


def data_rows(report, numbers: RunNumbers) -> list[tuple[str, str]]:
    rows = [
        ("training examples", str(report.train_examples)),
        ("validation examples", str(report.eval_examples)),
        ("dropped as too long", _dropped(report)),
        *_truncated_rows(report),
    ]
    if report.train_tokens:  # a report built without token counts has none to show
        rows += [
            ("tokens per epoch", f"{report.train_tokens} ({report.trained_tokens} with loss)"),
            ("tokens trained", f"{round(report.train_tokens * numbers.epochs)} ({numbers.epochs:.2f} epochs)"),
        ]
    return rows + packing_rows(report, numbers)


def packing_rows(report, numbers: RunNumbers) -> list[tuple[str, str]]:
    """With sft_args.packing: the packed rows and how full they are (real tokens / token slots), and the real tokens
    each optimizer step trained on, which packing raises at the same batch size."""
    if getattr(report, "packed_train_rows", None) is None:
        return []
    rows = [("packing", f"{report.packed_train_rows} rows, {report.packing_efficiency:.1%} of token slots used")]
    if report.train_tokens and numbers.steps:
        rows.append(("tokens per optimizer step", f"{report.train_tokens * numbers.epochs / numbers.steps:,.0f}"))
    return rows


def training_rows(numbers: RunNumbers, wall_seconds: float) -> list[tuple[str, str]]:
    train, evaluation = numbers.train_losses, numbers.eval_losses
    rows = [("optimizer steps", str(numbers.steps)), ("epochs run", f"{numbers.epochs:.2f}")]
    rows.append(("wall time", _duration(wall_seconds)))
    if numbers.train_runtime is not None:
        rows.append(("train runtime", _duration(numbers.train_runtime)))
    if numbers.tokens_per_second is not None:
        rows.append(("tokens/s", f"{numbers.tokens_per_second:.1f}"))
    if train:
        rows += [
            ("train loss: first", f"{train[0]:.4f}"),
            ("train loss: final", f"{train[-1]:.4f}"),
            ("train loss: best", f"{min(train):.4f}"),
        ]
    else:
        rows.append(("train loss", "not logged"))
    if evaluation:
        rows += [("eval loss: final", f"{evaluation[-1]:.4f}"), ("eval loss: best", f"{min(evaluation):.4f}")]
    return rows


def _markdown_table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value.replace('|', chr(92) + '|')} |" for key, value in rows]
    return "\n".join(lines)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def summary_markdown(
    config: dict,
    args,
    report,
    numbers: RunNumbers,
    final_dir: Path,
    wall_seconds: float,
    paths: dict[str, Path],
    evaluation: dict | None = None,
) -> str:
    """summary.md: config digest, data, training numbers, evaluation (when eval_conf ran), outputs, the loss curve
    and the resolved config."""
    here = Path(args.output_dir)
    outputs = [f"- model: `{final_dir}`"]
    outputs += [f"- {name}: [{_relative(path, here)}]({_relative(path, here)})" for name, path in paths.items()]
    parts = [
        f"# Run report: {here.name}",
        "## Configuration",
        _markdown_table(config_rows(config, args)),
        "## Data",
        _markdown_table(data_rows(report, numbers)),
        "## Training",
        _markdown_table(training_rows(numbers, wall_seconds)),
        "## Outputs",
        "\n".join(outputs),
    ]
    if evaluation:
        from ..evaluation.results import evaluation_markdown
        from ..evaluation.runner import EVAL_RESULTS_FILE

        parts[-2:-2] = ["## Evaluation", evaluation_markdown(evaluation, EVAL_RESULTS_FILE)]
    if "loss_curve" in paths:
        parts.append(f"![loss curve]({_relative(paths['loss_curve'], here)})")
    resolved = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip()
    parts.append(f"<details><summary>resolved config</summary>\n\n```yaml\n{resolved}\n```\n\n</details>")
    return "\n\n".join(parts) + "\n"


# --- the whole report --------------------------------------------------------------------------------------------


def _metrics_callback(trainer) -> MetricsFileCallback | None:
    callbacks = trainer.callback_handler.callbacks
    return next((callback for callback in callbacks if isinstance(callback, MetricsFileCallback)), None)


def _write_loss_curve(trainer, metrics: Path, image: Path) -> Path | None:
    """The loss curve from metrics.jsonl, or from the in-memory history when no file was kept. A problem is logged,
    not raised: the model is already saved and the run should not fail over a picture."""
    title = curve_title(image.parent)
    try:
        if metrics.is_file():
            return plot_losses(metrics, image, title)
        return plot_records(trainer.state.log_history, image, title)
    except Exception as error:  # noqa: BLE001 - any failure (an unwritable directory, odd records): a warning
        logger.warning("loss curve not written: %s: %s", type(error).__name__, error)
        return None


def write_run_report(
    trainer,
    report,
    final_dir: Path,
    wall_seconds: float,
    resolved_config: dict,
    console: Console | None = None,
    evaluation: dict | None = None,
) -> dict[str, Path]:
    """Write loss_curve.svg and summary.md into the Trainer's output_dir and print the run table.

    Main process only (others return {}). Returns the report files by name: "metrics", "loss_curve", "summary"
    (each only when it exists).
    """
    if not trainer.is_world_process_zero():
        return {}
    output_dir = Path(trainer.args.output_dir)
    callback = _metrics_callback(trainer)
    metrics = callback.path if callback else output_dir / METRICS_FILE
    paths: dict[str, Path] = {"metrics": metrics} if metrics.is_file() else {}
    image = _write_loss_curve(trainer, metrics, output_dir / LOSS_CURVE_FILE)
    if image is not None:
        paths["loss_curve"] = image
    numbers = RunNumbers.collect(trainer, report, callback.start_epoch if callback else 0.0)
    summary = output_dir / SUMMARY_FILE
    if evaluation and (output_dir / "eval_results.json").is_file():
        paths["eval_results"] = output_dir / "eval_results.json"
    text = summary_markdown(
        resolved_config, trainer.args, report, numbers, Path(final_dir), wall_seconds, paths, evaluation
    )
    try:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(text, encoding="utf-8")
        paths["summary"] = summary
    except OSError as error:
        logger.warning("run summary not written to %s: %s", summary, error)
    print_run_summary(trainer, report, final_dir, wall_seconds, console, numbers, paths, evaluation)
    return paths
