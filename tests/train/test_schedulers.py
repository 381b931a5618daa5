"""`lr_scheduler_type: plateau-with-warmup` (train/schedulers.py): the learning rate, step by step, on a scripted
sequence of evaluation losses; its state through a checkpoint; a training run resumed mid-plateau that goes on
exactly as the run never interrupted; and the config errors of a run that never evaluates."""

from __future__ import annotations

import io

import pytest
import torch

from finetuning.cli import main
from finetuning.config.loading import ConfigError, validate_config
from finetuning.config.training_args import PLATEAU_DEFAULTS
from finetuning.tracking.metrics_file import metric_series, read_metrics
from finetuning.tracking.report import METRICS_FILE
from finetuning.train.schedulers import PlateauWithWarmup, warmup_steps
from tests.conftest import sft_config, write_yaml

BASE = 0.5


def scheduler(warmup: int, **settings) -> PlateauWithWarmup:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    return PlateauWithWarmup(optimizer, warmup, **{**PLATEAU_DEFAULTS, **settings})


def rate(plateau: PlateauWithWarmup) -> float:
    return plateau.get_last_lr()[0]


def test_warmup_is_linear_per_optimizer_step_and_never_at_zero():
    plateau = scheduler(4)
    trace = [rate(plateau)]  # the rate of optimizer step 1
    for _ in range(6):
        plateau.step()
        trace.append(rate(plateau))
    assert trace == [BASE * 1 / 4, BASE * 2 / 4, BASE * 3 / 4, BASE, BASE, BASE, BASE]
    assert warmup_steps(0.05, 100) == 5 and warmup_steps(0.051, 100) == 6 and warmup_steps(3, 100) == 3
    assert rate(scheduler(0)) == BASE  # no warmup: the full rate from the first step


def test_drops_tenfold_after_patience_plus_one_evaluations_without_relative_improvement():
    plateau = scheduler(2)
    plateau.on_evaluation(0.1)  # during the warmup: does not count (VectorLM ignores the metric there)
    plateau.step(), plateau.step()
    plateau.on_evaluation(1.0)  # the best so far
    # within the relative threshold (1e-4) of the best: no improvement, however slightly lower
    for _ in range(10):
        plateau.on_evaluation(0.99995)
        assert rate(plateau) == BASE
    plateau.on_evaluation(0.9999)  # 1.0 × (1 - 1e-4) is still not below the threshold: the 11th bad evaluation
    assert rate(plateau) == pytest.approx(BASE * 0.1)
    plateau.on_evaluation(0.5)  # a real improvement resets the count ...
    for _ in range(10):
        plateau.on_evaluation(0.5)
    assert rate(plateau) == pytest.approx(BASE * 0.1)
    plateau.on_evaluation(0.49999)  # ... so the next drop is 11 bad evaluations later again
    assert rate(plateau) == pytest.approx(BASE * 0.01)
    plateau.step()  # optimizer steps after the warmup leave the rate alone
    assert rate(plateau) == pytest.approx(BASE * 0.01)


def test_state_survives_a_checkpoint_file():
    plateau = scheduler(1, patience=2)
    plateau.step()  # the warmup done
    plateau.on_evaluation(1.0)
    plateau.on_evaluation(1.0)
    buffer = io.BytesIO()
    torch.save(plateau.state_dict(), buffer)  # what the Trainer writes as scheduler.pt ...
    buffer.seek(0)
    resumed = scheduler(1, patience=2)
    resumed.optimizer.param_groups[0]["lr"] = rate(plateau)  # (the optimizer's own state holds the rate)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # ... and reads back with weights_only
    for run in (plateau, resumed):
        run.on_evaluation(1.0)
        run.on_evaluation(1.0)
    # the best and one bad evaluation before the checkpoint, two bad ones after: the third drops the rate
    assert rate(resumed) == rate(plateau) == pytest.approx(BASE * 0.1)


def plateau_config(tmp_path, model_dir, max_steps: int):
    """Evaluation after every step; a relative threshold of 0.9 makes every evaluation after the first a bad one, so
    with patience 1 the rate drops after every second evaluation: a plateau with state worth resuming."""
    return sft_config(
        tmp_path,
        model_dir,
        data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1}},
        training_args={
            "max_steps": max_steps,
            "lr_scheduler_type": "plataeu-with-warmup",  # VectorLM docs' spelling
            "lr_scheduler_kwargs": {"patience": 1, "threshold": 0.9},
            "warmup_steps": 2,
            "eval_strategy": "steps",
            "eval_steps": 1,
            "save_strategy": "steps",
            "save_steps": 3,
        },
        run_conf={"resume_from_checkpoint": "auto"},
    )


def learning_rates(output_dir) -> list[float]:
    return metric_series(read_metrics(output_dir / METRICS_FILE), "learning_rate")[1]


def test_training_follows_the_plateau_and_a_resume_goes_on_exactly(tmp_path, tiny_model_dir):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    assert main(["sft", str(write_yaml(straight / "c.yaml", plateau_config(straight, tiny_model_dir, 7)))]) == 0
    rate_ = 0.003  # sft_config's learning_rate
    # steps 1-2 warm up; evaluations after steps 2 (best), 3, 4 (second bad: drop), 5, 6 (drop)
    expected = [rate_ / 2, rate_, rate_, rate_, rate_ * 0.1, rate_ * 0.1, rate_ * 0.01]
    assert learning_rates(straight / "out") == pytest.approx(expected)

    # the same run stopped at step 3 (its checkpoint), then continued to step 7 from that checkpoint
    assert main(["sft", str(write_yaml(resumed / "c.yaml", plateau_config(resumed, tiny_model_dir, 3)))]) == 0
    assert (resumed / "out" / "checkpoint-3" / "scheduler.pt").is_file()
    assert main(["sft", str(write_yaml(resumed / "c.yaml", plateau_config(resumed, tiny_model_dir, 7)))]) == 0
    assert learning_rates(resumed / "out") == pytest.approx(expected)  # warmup position, best loss, bad count kept


def test_a_run_without_evaluations_is_a_config_error(tmp_path, tiny_model_dir):
    config = sft_config(tmp_path, tiny_model_dir, training_args={"lr_scheduler_type": "plateau-with-warmup"})
    with pytest.raises(ConfigError) as no_strategy:
        validate_config(config)
    assert "training_args.lr_scheduler_type: plateau-with-warmup lowers the learning rate" in str(no_strategy.value)
    assert "eval_strategy" in str(no_strategy.value)

    config["training_args"]["eval_strategy"] = "steps"  # but validation_data is NONE
    with pytest.raises(ConfigError) as no_data:
        validate_config(config)
    assert "needs validation data" in str(no_data.value)

    config["training_args"]["lr_scheduler_kwargs"] = {"patiense": 3, "factor": 2, "cooldown": 0.5}
    config["data_conf"]["validation_data"] = {"type": "AUTO_SPLIT"}
    with pytest.raises(ConfigError) as typo:
        validate_config(config)
    problems = typo.value.problems
    assert any(
        "lr_scheduler_kwargs.patiense: not a setting of plateau-with-warmup; did you mean" in p for p in problems
    )
    assert any("lr_scheduler_kwargs.factor: must be below 1" in p for p in problems)
    assert any("lr_scheduler_kwargs.cooldown: must be a whole number >= 0, got 0.5" in p for p in problems)
