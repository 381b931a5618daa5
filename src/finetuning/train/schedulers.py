"""`training_args.lr_scheduler_type: plateau-with-warmup` (VectorLM's scheduler; `plataeu-with-warmup`, its docs'
spelling, too): a linear warmup over the first optimizer steps, then ReduceLROnPlateau on the evaluation loss.

The Trainer knows neither half together: its schedulers are stepped once per optimizer step (a LambdaLR cannot see
the eval loss), and its ReduceLROnPlateau path steps only after evaluations (no warmup). So `PlateauWithWarmup` is
one small scheduler object with two inputs: `step()`, which the Trainer calls after every optimizer step (the warmup),
and `on_evaluation(loss)`, which the `PlateauScheduler` trainer mixin calls with each evaluation's `eval_loss` (the
plateau, torch's own ReduceLROnPlateau: factor 0.1, patience 10, relative threshold 1e-4, mode min; settings in
`training_args.lr_scheduler_kwargs`). Its `state_dict` is what the Trainer saves as scheduler.pt in every checkpoint,
so a resumed run goes on with the same best loss, bad-evaluation count and warmup position.

As in VectorLM: optimizer step n (from 1) of the warmup runs at learning_rate × n / W, step W and later at the full
rate (no step at rate 0); W = ceil(warmup_ratio × optimizer steps per epoch) (`training_args.warmup_steps` below 1
is that ratio here; 1 or more is W itself). Evaluations during the warmup do not count towards the plateau (VectorLM
ignores the metric there too). Unlike VectorLM, which steps its plateau after every optimizer step with the last
eval loss (so `patience` counts steps between evaluations), the plateau here is stepped once per evaluation, as the
config docs describe it: the rate drops tenfold after patience + 1 evaluations without a relative improvement.

The library sees `reduce_lr_on_plateau` (a name it accepts, which makes it refuse a run without evaluations too) with
a marker in lr_scheduler_kwargs; the mixin's `create_scheduler` builds ours instead (`with_plateau_scheduler`).
"""

from __future__ import annotations

import math
from typing import Any

from ..config.training_args import PLATEAU_DEFAULTS, PLATEAU_WITH_WARMUP

MARKER = "finetuning_schedule"  # in lr_scheduler_kwargs: which of our schedulers the trainer builds


def with_plateau_scheduler(args: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments for plateau-with-warmup: the library's stand-in name, our settings in lr_scheduler_kwargs."""
    if args.get("lr_scheduler_type") != PLATEAU_WITH_WARMUP:
        return args
    settings = {**PLATEAU_DEFAULTS, **(args.get("lr_scheduler_kwargs") or {})}
    return {
        **args,
        "lr_scheduler_type": "reduce_lr_on_plateau",
        "lr_scheduler_kwargs": {MARKER: PLATEAU_WITH_WARMUP, **settings},
    }


def plateau_settings(args) -> dict[str, Any] | None:
    """The ReduceLROnPlateau settings when the trainer arguments ask for plateau-with-warmup, else None."""
    kwargs = args.lr_scheduler_kwargs if isinstance(args.lr_scheduler_kwargs, dict) else {}
    if kwargs.get(MARKER) != PLATEAU_WITH_WARMUP:
        return None
    return {key: value for key, value in kwargs.items() if key != MARKER}


def warmup_steps(warmup: float, steps_per_epoch: int) -> int:
    """W: `warmup` steps when 1 or more, else that fraction of one epoch's optimizer steps, rounded up (VectorLM)."""
    return int(warmup) if warmup >= 1 else math.ceil(warmup * steps_per_epoch)


class PlateauWithWarmup:
    """The scheduler (module docstring). The Trainer uses `step`, `get_last_lr`, `state_dict`, `load_state_dict`."""

    def __init__(self, optimizer, warmup: int, **plateau_settings):
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        self.optimizer = optimizer
        self.warmup = warmup
        self.steps = 0  # optimizer steps taken
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.plateau = ReduceLROnPlateau(optimizer, mode="min", **plateau_settings)
        self._warm_up()  # the rate of the first step

    def _warm_up(self) -> None:
        """During the warmup, set the rate of the next optimizer step, (steps + 1) / W of the full rate."""
        if self.steps < self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * (self.steps + 1) / self.warmup

    def step(self) -> None:
        """After each optimizer step."""
        self.steps += 1
        self._warm_up()

    def on_evaluation(self, loss: float) -> None:
        """After each evaluation: the plateau's step, once the warmup is over."""
        if self.steps >= self.warmup:
            self.plateau.step(loss)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "steps": self.steps,
            "base_lrs": self.base_lrs,
            "plateau": self.plateau.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup, self.steps, self.base_lrs = state["warmup"], state["steps"], list(state["base_lrs"])
        self.plateau.load_state_dict(state["plateau"])


class PlateauScheduler:
    """Trainer mixin: builds PlateauWithWarmup when the arguments ask for it (`plateau_settings`) and hands it each
    evaluation's `eval_loss` (the token-weighted one for SFT, train/evaluation.py, whose mixin sets it before
    `evaluate` returns). Other schedulers are left to the Trainer."""

    _optimizer_steps_per_epoch: int | None = None

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._optimizer_steps_per_epoch = values[1]  # num_update_steps_per_epoch: what W is a fraction of
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        settings = plateau_settings(self.args)
        if settings is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        per_epoch = self._optimizer_steps_per_epoch or num_training_steps
        warmup = warmup_steps(self.args.warmup_steps, per_epoch)
        self.lr_scheduler = PlateauWithWarmup(optimizer or self.optimizer, warmup, **settings)
        self._created_lr_scheduler = True  # rebuilt by a later train() call, as the Trainer's own
        return self.lr_scheduler

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        loss = metrics.get(f"{kwargs.get('metric_key_prefix', 'eval')}_loss")
        if isinstance(self.lr_scheduler, PlateauWithWarmup) and loss is not None:
            self.lr_scheduler.on_evaluation(loss)
        return metrics
