"""Batch-size arithmetic: processes x per-device x accumulation == total, per-device as large as allowed."""

from __future__ import annotations

import pytest

from finetuning.train.batch_size import BatchSizeError, plan_batches
from finetuning.train.lr import scaled_learning_rate


@pytest.mark.parametrize(
    ("total", "max_per_device", "processes", "per_device", "accumulation"),
    [
        (8, 4, 1, 4, 2),
        (8, 3, 2, 2, 2),
        (512, 4, 1, 4, 128),
        (64, 64, 1, 64, 1),
        (64, 4, 2, 4, 8),
        (64, 4, 8, 4, 2),
        (64, 16, 8, 8, 1),
        (24, 5, 2, 4, 3),
        (24, 5, 8, 3, 1),
        (14, 4, 1, 2, 7),  # 7 per step does not fit in 4, and 14 only splits as 2 x 7
        (16, 1, 8, 1, 2),
    ],
)
def test_plan_fills_the_total_exactly(total, max_per_device, processes, per_device, accumulation):
    plan = plan_batches(total, max_per_device, processes)
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps) == (per_device, accumulation)
    assert processes * plan.per_device_train_batch_size * plan.gradient_accumulation_steps == total
    assert plan.per_device_train_batch_size <= max_per_device
    assert plan.per_device_eval_batch_size == per_device


def test_eval_batch_size_when_given():
    assert plan_batches(8, 4, 1, eval_batch_size=32).per_device_eval_batch_size == 32


def test_total_not_divisible_by_processes_is_a_clear_error():
    with pytest.raises(
        BatchSizeError, match=r"total_train_batch_size=10 is not divisible by the number of processes \(8\)"
    ):
        plan_batches(10, 4, 8)


@pytest.mark.parametrize(("scaling", "expected"), [("none", 2e-4), ("sqrt", 2e-4 * 8), ("linear", 2e-4 * 64)])
def test_learning_rate_multiplier_then_batch_scaling(scaling, expected):
    assert scaled_learning_rate(1e-4, 2.0, scaling, 64) == pytest.approx(expected)
