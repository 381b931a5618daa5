"""The short table printed at the end of a run: what was trained, how it went, where it went."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _last(history: list[dict], key: str):
    values = [entry[key] for entry in history if key in entry]
    return values[-1] if values else None


def print_run_summary(trainer, report, final_dir, wall_seconds: float, console: Console | None = None) -> None:
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    rows = [
        (
            "training examples",
            f"{report.train_examples}" + (f" (+{report.eval_examples} validation)" if report.eval_examples else ""),
        ),
        ("dropped as too long", ", ".join(f"{k}: {v}" for k, v in report.dropped_too_long.items()) or "0"),
        # KTO data is tokenised inside TRL's trainer, so its token counts are not known here
        *(
            [("tokens per epoch", f"{report.train_tokens} ({report.trained_tokens} trained)")]
            if report.train_tokens
            else []
        ),
        ("optimizer steps", f"{trainer.state.global_step}"),
        ("training loss", f"{losses[0]:.4f} → {losses[-1]:.4f}" if losses else "not logged"),
    ]
    eval_loss = _last(history, "eval_loss")
    if eval_loss is not None:
        rows.append(("validation loss", f"{eval_loss:.4f}"))
    rows += [("wall time", f"{wall_seconds:.1f}s"), ("saved to", str(final_dir))]
    table = Table(title="run summary", show_header=False, title_justify="left")
    for key, value in rows:
        table.add_row(key, value)
    (console or Console()).print(table)
