"""The run report on real (tiny, CPU) Trainer runs: metrics.jsonl, loss_curve.svg, summary.md and the table; the SVG
loss curve read back point by point."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from finetuning.config.loading import dump_resolved_config, load_any_config
from finetuning.data.inputs import DataReport
from finetuning.tracking.loss_curve import _nice_step
from finetuning.tracking.report import (
    LOSS_CURVE_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    MetricsFileCallback,
    metric_series,
    plot_losses,
    plot_records,
    read_metrics,
    write_run_report,
)
from tests.conftest import FACTS, sft_config, write_yaml

SVG = "{http://www.w3.org/2000/svg}"


def texts(count: int, offset: int = 0) -> list[str]:
    rows = [json.loads(line) for line in FACTS.read_text(encoding="utf-8").splitlines()[offset : offset + count]]
    return [" ".join(message["content"] for message in row["messages"]) for row in rows]


def make_trainer(model_dir: Path, output_dir: Path, evaluate: bool = False, callback: bool = True, **args):
    """A real transformers.Trainer on the tiny model: plain causal LM on a few fact texts, logging every step."""
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def dataset(rows: list[str]) -> Dataset:
        return Dataset.from_dict({"text": rows}).map(lambda row: tokenizer(row["text"]), remove_columns=["text"])

    settings = {
        "output_dir": str(output_dir),
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 42,
        **({"eval_strategy": "steps", "eval_steps": 2, "per_device_eval_batch_size": 4} if evaluate else {}),
        **args,
    }
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=TrainingArguments(**settings),
        train_dataset=dataset(texts(32)),
        eval_dataset=dataset(texts(4, offset=50)) if evaluate else None,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    if callback:
        trainer.add_callback(MetricsFileCallback(output_dir / METRICS_FILE))
    return trainer


@pytest.fixture
def resolved_config(tmp_path, tiny_model_dir) -> dict:
    config = sft_config(tmp_path, tiny_model_dir, peft_conf={"peft_type": "LORA", "peft_kwargs": {"r": 4}})
    return dump_resolved_config(load_any_config(write_yaml(tmp_path / "config.yaml", config)))


def data_report() -> DataReport:
    return DataReport(
        train_examples=32,
        eval_examples=4,
        dropped_too_long={"training": 3, "validation": 1},
        train_tokens=1234,
        trained_tokens=567,
    )


def report_of(trainer, final_dir: Path, resolved: dict, report: DataReport | None = None) -> tuple[dict, str]:
    out = io.StringIO()
    paths = write_run_report(
        trainer, report or data_report(), final_dir, 12.5, resolved, console=Console(file=out, width=200)
    )
    return paths, out.getvalue()


def assert_svg(path: Path, records: list[dict], series: tuple[str, ...], height: int = 600) -> ElementTree.Element:
    """The curve is an SVG of the right size with exactly one polyline per expected metric, a point for every finite
    value the records have of it, x growing with the step and y falling as the value grows (SVG's y points down)."""
    assert LOSS_CURVE_FILE == "loss_curve.svg"
    root = ElementTree.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("1080", str(height), f"0 0 1080 {height}")
    lines = {line.get("data-series"): line for line in root.iter(f"{SVG}polyline")}
    assert sorted(lines) == sorted(series)
    for key in series:
        steps, values = metric_series(records, key)
        finite = [(step, value) for step, value in zip(steps, values, strict=True) if math.isfinite(value)]
        points = [tuple(map(float, point.split(","))) for point in lines[key].get("points").split()]
        assert len(points) == len(finite) > 0, key
        assert all(0 <= x <= 1080 and 0 <= y <= height for x, y in points)
        assert [x for x, _ in points] == sorted(x for x, _ in points)
        by_value = [y for _, (_, y) in sorted(zip(finite, points, strict=True), key=lambda pair: pair[0][1])]
        assert by_value == sorted(by_value, reverse=True), key
    return root


def texts_of(root: ElementTree.Element) -> list[str]:
    return [text.text for text in root.iter(f"{SVG}text")]


@pytest.mark.slow
def test_report_of_a_run_with_evaluation(tmp_path, tiny_model_dir, resolved_config):
    out = tmp_path / "run"
    trainer = make_trainer(tiny_model_dir, out, evaluate=True)
    trainer.train()
    final_dir = out / "checkpoint-final"
    paths, table = report_of(trainer, final_dir, resolved_config)

    assert paths == {
        "metrics": out / METRICS_FILE,
        "loss_curve": out / LOSS_CURVE_FILE,
        "summary": out / SUMMARY_FILE,
    }
    records = read_metrics(out / METRICS_FILE)
    history = trainer.state.log_history
    assert len(records) == len(history)  # one line per Trainer.log call: 4 train, 2 eval, 1 final
    assert [record["step"] for record in records] == [entry["step"] for entry in history]
    train = [record for record in records if "loss" in record]
    assert [record["step"] for record in train] == [1, 2, 3, 4]
    assert [record["loss"] for record in train] == [entry["loss"] for entry in history if "loss" in entry]
    assert [record["step"] for record in records if "eval_loss" in record] == [2, 4]
    assert all(record["epoch"] > 0 for record in records)

    assert_svg(out / LOSS_CURVE_FILE, records, ("loss", "eval_loss", "learning_rate"))

    summary = (out / SUMMARY_FILE).read_text(encoding="utf-8")
    losses = [entry["loss"] for entry in history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    for expected in (
        "| method | sft |",
        "| PEFT | LORA (r=4) |",
        "| quantization | no-quantization |",
        "| batch | 4 total = 1 process(es) × 4 per device × 1 accumulation |",
        "| learning rate | 0.003 (linear schedule) |",
        "| length | max_steps 4 |",
        "| optimizer steps | 4 |",
        "| dropped as too long | training: 3, validation: 1 |",
        "| tokens per epoch | 1234 (567 with loss) |",
        f"| train loss: first | {losses[0]:.4f} |",
        f"| train loss: final | {losses[-1]:.4f} |",
        f"| train loss: best | {min(losses):.4f} |",
        f"| eval loss: final | {eval_losses[-1]:.4f} |",
        f"| eval loss: best | {min(eval_losses):.4f} |",
        "| tokens/s |",
        f"- model: `{final_dir}`",
        "](loss_curve.svg)",
        "](metrics.jsonl)",
        "<summary>resolved config</summary>",
    ):
        assert expected in summary, expected

    for expected in ("(+4 validation)", "validation loss", "optimizer steps", "tokens/s", str(out / SUMMARY_FILE)):
        assert expected in table, expected


@pytest.mark.slow
def test_callback_appends_when_training_resumes(tmp_path, tiny_model_dir, resolved_config):
    out = tmp_path / "run"
    make_trainer(tiny_model_dir, out, max_steps=2, save_strategy="steps", save_steps=2).train()
    first = (out / METRICS_FILE).read_text(encoding="utf-8")

    resumed = make_trainer(tiny_model_dir, out, max_steps=4, save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    text = (out / METRICS_FILE).read_text(encoding="utf-8")

    assert text.startswith(first)
    added = [json.loads(line) for line in text[len(first) :].splitlines()]
    assert [record["step"] for record in added if "loss" in record] == [3, 4]
    assert "train_runtime" in added[-1]
    paths, table = report_of(resumed, out / "checkpoint-final", resolved_config)
    assert_svg(paths["loss_curve"], read_metrics(out / METRICS_FILE), ("loss", "learning_rate"))  # steps 1-4, once
    assert "| optimizer steps | 4 |" in paths["summary"].read_text(encoding="utf-8")

    make_trainer(tiny_model_dir, out, max_steps=1).train()  # a fresh run in the same directory starts over
    assert [record["step"] for record in read_metrics(out / METRICS_FILE)] == [1, 1]  # loss, then the final metrics


@pytest.mark.slow
def test_run_without_evaluation_still_plots_also_without_metrics_file(tmp_path, tiny_model_dir, resolved_config):
    out = tmp_path / "run"
    trainer = make_trainer(tiny_model_dir, out, max_steps=2)
    trainer.train()
    unknown_tokens = DataReport(train_examples=32)  # a report built without token counts
    paths, table = report_of(trainer, out / "final", resolved_config, unknown_tokens)
    assert_svg(paths["loss_curve"], read_metrics(out / METRICS_FILE), ("loss", "learning_rate"))
    summary = paths["summary"].read_text(encoding="utf-8")
    assert "eval loss" not in summary and "tokens/s" not in summary and "tokens per epoch" not in summary
    assert "| dropped as too long | 0 |" in summary
    assert "validation loss" not in table and "tokens/s" not in table

    # no callback attached, no file: the curve comes from trainer.state.log_history
    (out / METRICS_FILE).unlink()
    trainer.remove_callback(MetricsFileCallback)
    (out / LOSS_CURVE_FILE).unlink()
    paths, _ = report_of(trainer, out / "final", resolved_config, unknown_tokens)
    assert "metrics" not in paths
    assert_svg(paths["loss_curve"], trainer.state.log_history, ("loss", "learning_rate"))
    assert "metrics.jsonl" not in paths["summary"].read_text(encoding="utf-8")


def test_plot_losses_of_a_single_point(tmp_path):
    metrics = tmp_path / METRICS_FILE
    metrics.write_text(
        json.dumps({"step": 1, "epoch": 0.1, "loss": 2.5, "learning_rate": 1e-4}) + '\n{"step": 2, "lo',  # cut short
        encoding="utf-8",
    )
    svg = plot_losses(metrics, tmp_path / "nested" / "curve.svg")
    assert svg == tmp_path / "nested" / "curve.svg"
    root = assert_svg(svg, read_metrics(metrics), ("loss", "learning_rate"))
    markers = {group.get("data-markers"): len(group) for group in root.iter(f"{SVG}g") if group.get("data-markers")}
    assert markers == {"loss": 1, "learning_rate": 1}  # one point is a marker, not an invisible polyline
    labels = texts_of(root)
    assert f"{tmp_path.name}: loss and learning rate" in labels  # titled after the run's directory
    assert {"0", "1", "2"} <= set(labels)  # a whole step either side of the only one
    assert "1e-4" in labels and "optimizer step" in labels and "loss" in labels and "learning rate" in labels
    assert not list(tmp_path.glob("nested/*.partial"))


def test_plot_losses_adds_a_reward_margin_panel_for_preference_runs(tmp_path):
    rows = [
        {"step": step, "loss": 0.7 - 0.05 * step, "learning_rate": 1e-5, "rewards/margins": 0.1 * step}
        for step in range(1, 6)
    ]
    rows.append({"step": 5, "eval_loss": 0.5, "eval_rewards/margins": 0.4})
    metrics = tmp_path / METRICS_FILE
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    root = assert_svg(
        plot_losses(metrics, tmp_path / "curve.svg"),
        rows,
        ("loss", "eval_loss", "learning_rate", "rewards/margins", "eval_rewards/margins"),
        height=780,
    )
    labels = texts_of(root)
    assert {"reward margin", "rewards/margins", "eval rewards/margins"} <= set(labels)
    margins = [line for line in root.iter(f"{SVG}polyline") if "margins" in line.get("data-series")]
    loss = next(line for line in root.iter(f"{SVG}polyline") if line.get("data-series") == "loss")
    lowest_loss = max(float(point.split(",")[1]) for point in loss.get("points").split())
    for line in margins:  # the margins panel lies below the loss panel
        assert min(float(point.split(",")[1]) for point in line.get("points").split()) > lowest_loss
    assert labels.count("optimizer step") == 1  # one x axis, shared


def test_plot_records_without_loss_and_with_odd_values(tmp_path):
    nothing = plot_records([{"step": 3, "train_runtime": 1.5}], tmp_path / "none.svg", title="a<b & c")
    root = assert_svg(nothing, [], ())
    assert "no loss logged" in texts_of(root) and "a<b & c" in texts_of(root)  # escaped in the file, read back

    records = [{"step": step, "loss": 1.0 / step} for step in range(1, 61)]
    records[9]["loss"], records[19]["loss"] = float("nan"), float("inf")  # skipped, not drawn
    root = assert_svg(plot_records(records, tmp_path / "long.svg"), records, ("loss",))
    assert not list(root.iter(f"{SVG}circle"))  # more than 50 points: a line without markers
    assert "no loss logged" not in texts_of(root)


@pytest.mark.parametrize(
    ("span", "integer", "step"),
    [(1.0, False, 0.2), (0.5, False, 0.1), (12.0, False, 2.5), (4e-4, False, 1e-4), (3.0, True, 1.0), (12, True, 5)],
)
def test_ticks_are_round_numbers(span, integer, step):
    assert _nice_step(span, integer=integer) == pytest.approx(step)


def test_only_the_main_process_writes(tmp_path):
    from transformers import TrainerControl, TrainerState

    callback = MetricsFileCallback(tmp_path / METRICS_FILE)
    state = TrainerState(global_step=3, is_world_process_zero=False)
    callback.on_log(None, state, TrainerControl(), logs={"loss": 1.0})
    assert not (tmp_path / METRICS_FILE).exists()
    other_rank = SimpleNamespace(is_world_process_zero=lambda: False)
    assert write_run_report(other_rank, data_report(), tmp_path, 1.0, {}) == {}
    assert not any(tmp_path.iterdir())
