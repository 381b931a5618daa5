"""Automatic batch size: fit per-device batch and accumulation to a fixed total, for any number of processes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


class BatchSizeError(UserError):
    """The requested total cannot be split evenly over the processes."""


@dataclass(frozen=True)
class BatchPlan:
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    per_device_eval_batch_size: int
    num_processes: int = 1

    @property
    def total_train_batch_size(self) -> int:
        """Examples per optimizer step over all processes: what batchsize_conf asked for, exactly."""
        return self.num_processes * self.per_device_train_batch_size * self.gradient_accumulation_steps

    def describe(self) -> str:
        """The split as the run's start-up line says it (and errors that cite the plan)."""
        return (
            f"{self.num_processes} process(es) x {self.per_device_train_batch_size} per device x "
            f"{self.gradient_accumulation_steps} accumulation = {self.total_train_batch_size}"
        )


def plan_batches(total: int, max_per_device: int, num_processes: int, eval_batch_size: int | None = None) -> BatchPlan:
    """Largest per-device batch <= max_per_device with processes x per-device x accumulation == total exactly.

    Accumulation grows one step at a time, skipping values that do not divide the per-process share, so the first
    fit found is the one with the largest per-device batch.
    """
    if total < 1 or max_per_device < 1 or num_processes < 1:
        raise BatchSizeError("batch sizes and the number of processes must be positive")
    if total % num_processes:
        raise BatchSizeError(
            f"batchsize_conf.total_train_batch_size={total} is not divisible by the number of processes "
            f"({num_processes}); choose a multiple of {num_processes}"
        )
    per_process = total // num_processes
    accumulation = 1
    while per_process // accumulation > max_per_device or per_process % accumulation:
        accumulation += 1
    per_device = per_process // accumulation
    return BatchPlan(per_device, accumulation, eval_batch_size or per_device, num_processes)
