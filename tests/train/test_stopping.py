"""The `stopping` section (train/stopping.py): the loss watchdog counts logging steps (a good loss resets it, a NaN
is a bad one), stops a real run at the step it trips with that step's checkpoint, a failed status and a user-error
exit; early stopping ends a run after `patience` evaluations without improvement and saves the final model; and
the config errors of settings that cannot act."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from finetuning.cli import main
from finetuning.config.loading import ConfigError, validate_config
from finetuning.errors import USER_ERROR_EXIT
from finetuning.sft import run_sft
from finetuning.tracking.metrics_file import metric_series, read_metrics
from finetuning.tracking.report import METRICS_FILE
from finetuning.train.stopping import LOSS_WATCHDOG, LossWatchdog
from tests.conftest import sft_config, write_yaml


def feed(watchdog: LossWatchdog, losses: list[float]) -> list[bool]:
    """Log each loss at steps 1, 2, ...; whether training was told to stop after each."""
    from transformers import TrainerControl

    stops = []
    for step, loss in enumerate(losses, start=1):
        control = TrainerControl()
        watchdog.on_log(None, SimpleNamespace(global_step=step), control, logs={"loss": loss})
        watchdog.on_log(None, SimpleNamespace(global_step=step), control, logs={"eval_loss": 99.0})  # not counted
        stops.append(control.should_training_stop and control.should_save)
    return stops


def test_the_watchdog_counts_consecutive_logged_losses_above_the_threshold():
    watchdog = LossWatchdog(threshold=2.0, patience=3)
    # two high, one good (resets), then three high: trips on the sixth
    assert feed(watchdog, [3.0, 2.5, 1.0, 2.1, 5.0, 9.0]) == [False] * 5 + [True]
    assert watchdog.message() == (
        "stopping.loss_threshold: the training loss was above 2 for 3 logging steps in a row (2.1 (step 4), 5 (step 5), "
        "9 (step 6)): training stopped at step 6"
    )
    assert feed(LossWatchdog(2.0, 2), [math.nan, math.inf]) == [False, True]  # not a number: too high, not fine
    assert feed(LossWatchdog(2.0, 1), [2.0, 1.9]) == [False, False]  # at the threshold is not above it


def watchdog_config(tmp_path, model_dir, logging_steps: int) -> dict:
    return sft_config(
        tmp_path,
        model_dir,
        training_args={"max_steps": 20, "logging_steps": logging_steps},
        stopping={"loss_threshold": 0.001, "loss_patience": 3},  # every loss of the tiny model is above it
    )


def test_a_watchdog_stop_saves_that_steps_checkpoint_and_exits_as_a_user_error(tmp_path, tiny_model_dir, capsys):
    config = write_yaml(tmp_path / "c.yaml", watchdog_config(tmp_path, tiny_model_dir, logging_steps=2))
    assert main(["sft", str(config)]) == USER_ERROR_EXIT
    out = tmp_path / "out"
    # logged at steps 2, 4, 6: the third logging step above the threshold stops the run there
    assert metric_series(read_metrics(out / METRICS_FILE), "loss")[0] == [2, 4, 6]
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-6"]
    assert (out / "checkpoint-6" / "model.safetensors").is_file()
    captured = capsys.readouterr()
    assert "Training stopped by loss watchdog at step 6 of 20." in captured.out
    problem = captured.err.splitlines()[-1].strip()
    assert problem.startswith("stopping.loss_threshold: the training loss was above 0.001 for 3 logging steps in a row")
    assert problem.endswith("training stopped at step 6") and "(step 2)" in problem and "(step 6)" in problem


def test_the_run_result_says_the_watchdog_stopped_it(tmp_path, tiny_model_dir):
    result = run_sft(validate_config(watchdog_config(tmp_path, tiny_model_dir, logging_steps=1)))
    assert (result.stopped_by, result.step, result.max_steps, result.final_dir) == (LOSS_WATCHDOG, 3, 20, None)
    assert result.checkpoint == tmp_path / "out" / "checkpoint-3"
    assert result.error.startswith("stopping.loss_threshold: the training loss was above 0.001")


def test_early_stopping_ends_after_patience_evaluations_without_improvement(tmp_path, tiny_model_dir, capsys):
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        data_conf={"validation_data": {"type": "AUTO_SPLIT", "ratio": 0.1}},
        training_args={"max_steps": 20, "eval_strategy": "steps", "eval_steps": 1},
        # no improvement can be larger than 100: every evaluation after the first is one without improvement
        stopping={"early_stopping_patience": 2, "early_stopping_threshold": 100.0},
    )
    assert validate_config(config).training_args["metric_for_best_model"] == "eval_loss"
    assert main(["sft", str(write_yaml(tmp_path / "c.yaml", config))]) == 0
    evaluated = metric_series(read_metrics(tmp_path / "out" / METRICS_FILE), "eval_loss")[0]
    assert evaluated == [1, 2, 3]  # the best, then two without improvement: stopped
    assert (tmp_path / "out" / "checkpoint-final" / "model.safetensors").is_file()
    assert "Training finished." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("stopping", "training_args", "problem"),
    [
        (
            {"early_stopping_patience": 2},
            {},
            "stopping.early_stopping_patience: counts evaluations without improvement, so it needs evaluations",
        ),
        ({"loss_patience": 2}, {}, "stopping.loss_patience: only applies with stopping.loss_threshold"),
        (
            {"early_stopping_threshold": 0.1},
            {},
            "stopping.early_stopping_threshold: only applies with stopping.early_stopping_patience",
        ),
        ({"loss_patience": 0, "loss_threshold": 1.0}, {}, "stopping.loss_patience: must be greater than or equal to 1"),
        ({"loss_treshold": 1.0}, {}, "stopping.loss_treshold: unknown key; did you mean 'loss_threshold'?"),
    ],
)
def test_settings_that_cannot_act_are_config_errors(tmp_path, tiny_model_dir, stopping, training_args, problem):
    config = sft_config(tmp_path, tiny_model_dir, stopping=stopping, training_args=training_args)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert any(line.startswith(problem) for line in error.value.problems), error.value.problems
