"""`lr_scheduler_type: one_cycle` and the cosine extensions (`lr_scheduler_kwargs.min_lr_ratio`, `constant_lr_ratio`,
`quadratic_warmup`; train/schedulers.py): rates against axolotl's formulas written out here, torch's OneCycleLR
as axolotl sets it up, the rates a real run logs, a resume that keeps the trace, and the config errors."""

from __future__ import annotations

import io
import math
import shutil

import pytest
import torch

from finetuning.cli import main
from finetuning.config.loading import ConfigError, validate_config
from finetuning.tracking.metrics_file import metric_series, read_metrics
from finetuning.tracking.report import METRICS_FILE
from finetuning.train.schedulers import cosine_factor, cosine_schedule, one_cycle_schedule
from tests.conftest import sft_config, write_yaml

LR = 0.003  # sft_config's learning_rate


def optimizer(lr: float = 1.0):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def trace(scheduler, steps: int) -> list[float]:
    """The rate of optimizer steps 1..steps (what the Trainer logs as learning_rate at each of them)."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def half_cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def test_min_lr_ratio_is_axolotls_cosine_with_min_lr():
    # warmup 2 of 10 steps: rates step/2 during the warmup, then (1 - 0.1) × cosine + 0.1 over the 8 steps after it
    rates = [cosine_factor(step, warmup=2, total=10, min_lr_ratio=0.1) for step in range(11)]
    assert rates[:3] == [0.0, 0.5, 1.0]
    assert rates[6] == pytest.approx(0.9 * half_cosine(4 / 8) + 0.1) == pytest.approx(0.55)
    assert rates[10] == pytest.approx(0.1)  # the floor, never below it
    assert min(rates[2:]) == pytest.approx(0.1)


def test_constant_lr_ratio_reaches_the_floor_at_that_share_of_the_run_and_stays():
    # axolotl's get_cosine_schedule_with_warmup_decay_constant: the cosine runs to int(10 × 0.6) = 6 steps
    rates = [cosine_factor(step, warmup=2, total=10, min_lr_ratio=0.2, constant_lr_ratio=0.6) for step in range(11)]
    assert rates[4] == pytest.approx(0.8 * half_cosine(2 / 4) + 0.2) == pytest.approx(0.6)
    assert rates[6:] == pytest.approx([0.2] * 5)
    # without a floor: cosine to 0 at step 6, then 0
    assert cosine_factor(8, warmup=2, total=10, constant_lr_ratio=0.6) == 0


def test_quadratic_warmup_is_axolotls():
    rates = [cosine_factor(step, warmup=4, total=10, quadratic_warmup=True) for step in range(11)]
    assert rates[:5] == pytest.approx([0, 1 / 16, 4 / 16, 9 / 16, 1])
    assert rates[7] == pytest.approx(half_cosine(3 / 6))
    # combined with a floor here (axolotl then ignores min_lr_ratio)
    assert cosine_factor(10, warmup=4, total=10, quadratic_warmup=True, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_the_schedule_object_steps_through_the_factors_and_resumes_from_its_state():
    settings = {"min_lr_ratio": 0.1, "constant_lr_ratio": 0.8}
    straight = trace(cosine_schedule(optimizer(), 2, 10, settings), 10)
    assert straight == pytest.approx([cosine_factor(step, warmup=2, total=10, **settings) for step in range(10)])

    first = cosine_schedule(optimizer(), 2, 10, settings)
    before = trace(first, 4)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # what the Trainer writes as scheduler.pt ...
    buffer.seek(0)
    resumed = cosine_schedule(optimizer(), 2, 10, settings)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # ... and reads back with weights_only
    assert before + trace(resumed, 6) == pytest.approx(straight)


def test_one_cycle_is_torchs_with_the_warmup_as_pct_start():
    ours = trace(one_cycle_schedule(optimizer(), 0.5, 10, 3, {"div_factor": 5}), 10)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer(), max_lr=0.5, total_steps=10, pct_start=0.3, anneal_strategy="cos", div_factor=5
    )
    assert ours == pytest.approx(trace(reference, 10))
    assert ours[0] == pytest.approx(0.5 / 5)  # starts at learning_rate / div_factor
    assert max(ours) == pytest.approx(0.5)  # peaks at learning_rate after the warmup's share of the run
    assert ours[-1] < 0.5 / 5 / 1000  # ends near learning_rate / div_factor / final_div_factor (1e4)


def logged_rates(output_dir) -> list[float]:
    return metric_series(read_metrics(output_dir / METRICS_FILE), "learning_rate")[1]


def run_config(tmp_path, model_dir, **training_args) -> dict:
    return sft_config(
        tmp_path,
        model_dir,
        training_args={"max_steps": 8, "warmup_steps": 2, "save_strategy": "steps", "save_steps": 4, **training_args},
        run_conf={"resume_from_checkpoint": "auto"},
    )


@pytest.mark.slow  # three short trainings
def test_a_run_logs_the_cosine_rates_and_a_resume_goes_on_exactly(tmp_path, tiny_model_dir):
    settings = {"min_lr_ratio": 0.1, "quadratic_warmup": True}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    config = run_config(straight, tiny_model_dir, lr_scheduler_type="cosine", lr_scheduler_kwargs=settings)
    assert main(["sft", str(write_yaml(straight / "c.yaml", config))]) == 0
    expected = [LR * cosine_factor(step, warmup=2, total=8, **settings) for step in range(8)]
    assert logged_rates(straight / "out") == pytest.approx(expected)

    # the same run continued from its step-4 checkpoint: steps 5-8 at the rates of the uninterrupted run
    shutil.copytree(straight / "out" / "checkpoint-4", resumed / "out" / "checkpoint-4")
    config = run_config(resumed, tiny_model_dir, lr_scheduler_type="cosine", lr_scheduler_kwargs=settings)
    assert main(["sft", str(write_yaml(resumed / "c.yaml", config))]) == 0
    assert logged_rates(resumed / "out") == pytest.approx(expected[4:])


def test_a_one_cycle_run_logs_torchs_rates(tmp_path, tiny_model_dir):
    config = run_config(tmp_path, tiny_model_dir, lr_scheduler_type="one_cycle", lr_scheduler_kwargs={"div_factor": 10})
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer(), max_lr=LR, total_steps=8, pct_start=2 / 8, anneal_strategy="cos", div_factor=10
    )
    assert logged_rates(tmp_path / "out") == pytest.approx(trace(reference, 8))


def problems_of(config) -> list[str]:
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    return error.value.problems


def test_unknown_or_wrong_settings_are_config_errors_at_their_keys(tmp_path, tiny_model_dir):
    cosine = sft_config(
        tmp_path,
        tiny_model_dir,
        training_args={
            "lr_scheduler_type": "cosine",
            "lr_scheduler_kwargs": {"min_lr_rato": 0.1, "constant_lr_ratio": 1.5, "quadratic_warmup": "yes"},
        },
    )
    assert problems_of(cosine) == [
        "training_args.lr_scheduler_kwargs.min_lr_rato: not a setting of cosine; did you mean 'min_lr_ratio'?",
        "training_args.lr_scheduler_kwargs.constant_lr_ratio: must be a number from 0 to 1, got 1.5",
        "training_args.lr_scheduler_kwargs.quadratic_warmup: must be true or false, got 'yes'",
    ]
    one_cycle = sft_config(
        tmp_path,
        tiny_model_dir,
        training_args={"lr_scheduler_type": "one_cycle", "lr_scheduler_kwargs": {"max_lr": 1.0, "div_factor": 0}},
    )
    problems = problems_of(one_cycle)
    assert problems[0].startswith("training_args.lr_scheduler_kwargs.max_lr: not a setting of one_cycle; expected")
    assert problems[1] == "training_args.lr_scheduler_kwargs.div_factor: must be a number greater than 0, got 0"
    elsewhere = sft_config(
        tmp_path,
        tiny_model_dir,
        training_args={"lr_scheduler_type": "linear", "lr_scheduler_kwargs": {"min_lr_ratio": 0.1}},
    )
    assert problems_of(elsewhere) == [
        "training_args.lr_scheduler_kwargs.min_lr_ratio: applies to lr_scheduler_type cosine, not linear"
    ]
    # valid: plain cosine keeps the library's own (num_cycles), one_cycle all of OneCycleLR's settings
    cosine["training_args"]["lr_scheduler_kwargs"] = {"num_cycles": 1}
    assert validate_config(cosine).training_args["lr_scheduler_kwargs"] == {"num_cycles": 1}
    one_cycle["training_args"]["lr_scheduler_kwargs"] = {"div_factor": 10, "three_phase": True, "pct_start": 0.1}
    assert validate_config(one_cycle).training_args["lr_scheduler_type"] == "one_cycle"
