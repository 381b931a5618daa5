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

The library sees a name it accepts (`reduce_lr_on_plateau`, which makes it refuse a run without evaluations too;
`cosine` for the others) with a marker in lr_scheduler_kwargs; the `EngineSchedulers` trainer mixin's
`create_scheduler` builds ours instead (`with_engine_scheduler`).

`training_args.lr_scheduler_type: one_cycle` is torch's OneCycleLR over the run, as axolotl builds it: max_lr is
`learning_rate`, total_steps the run's optimizer steps, pct_start the warmup's share of them (`warmup_steps`, a
fraction below 1; `lr_scheduler_kwargs.pct_start` wins), cosine annealing; the other OneCycleLR settings (div_factor,
final_div_factor, three_phase, cycle_momentum, ...) come from lr_scheduler_kwargs. `cosine` with
`lr_scheduler_kwargs.min_lr_ratio`, `constant_lr_ratio` or `quadratic_warmup` is axolotl's cosine family
(`cosine_factor`). Both are stepped after every optimizer step like the library's own, and their state_dict is
scheduler.pt: a resumed run goes on with the same rates.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from ..config.training_args import (
    COSINE_EXTENSIONS,
    ENGINE_SCHEDULERS,
    ONE_CYCLE,
    PLATEAU_DEFAULTS,
    PLATEAU_WITH_WARMUP,
)
from ..errors import UserError

MARKER = "finetuning_schedule"  # in lr_scheduler_kwargs: which of our schedulers the trainer builds
COSINE = "cosine"


def with_engine_scheduler(args: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments for a scheduler of ours: the library's stand-in name, our settings in lr_scheduler_kwargs
    (plateau-with-warmup's with VectorLM's defaults). Other schedulers are left as they are."""
    name = args.get("lr_scheduler_type")
    kwargs = args.get("lr_scheduler_kwargs") or {}
    if name == PLATEAU_WITH_WARMUP:
        kwargs = {**PLATEAU_DEFAULTS, **kwargs}
    elif not (
        name == ONE_CYCLE or (name == COSINE and isinstance(kwargs, dict) and set(kwargs) & set(COSINE_EXTENSIONS))
    ):
        return args
    return {
        **args,
        "lr_scheduler_type": ENGINE_SCHEDULERS.get(name, name),
        "lr_scheduler_kwargs": {MARKER: name, **kwargs},
    }


def engine_schedule(args) -> tuple[str, dict[str, Any]] | None:
    """(which of our schedulers, its settings) when the trainer arguments ask for one, else None."""
    kwargs = args.lr_scheduler_kwargs if isinstance(args.lr_scheduler_kwargs, dict) else {}
    if kwargs.get(MARKER) is None:
        return None
    return kwargs[MARKER], {key: value for key, value in kwargs.items() if key != MARKER}


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


def cosine_factor(
    step: int,
    *,
    warmup: int,
    total: int,
    num_cycles: float = 0.5,
    min_lr_ratio: float = 0.0,
    constant_lr_ratio: float | None = None,
    quadratic_warmup: bool = False,
) -> float:
    """The learning rate after `step` optimizer steps, as a fraction of learning_rate: axolotl's cosine schedules
    (utils/schedulers.py), each option alone exactly as there.

    Warmup: step / warmup, squared with quadratic_warmup (get_cosine_schedule_with_quadratic_warmup). Then a cosine
    from 1 down to min_lr_ratio (get_cosine_schedule_with_min_lr), which with constant_lr_ratio reaches min_lr_ratio
    at int(total × constant_lr_ratio) steps and stays there (get_cosine_schedule_with_warmup_decay_constant). axolotl
    picks one of them (quadratic warmup ignores its min_lr_ratio; constant_lr_ratio needs a min_lr_ratio there);
    here they combine."""
    if step < warmup:
        ramp = step / max(1, warmup)
        return ramp * ramp if quadratic_warmup else ramp
    end = int(total * constant_lr_ratio) if constant_lr_ratio is not None else total
    progress = (min(step, end) - warmup) / max(1, end - warmup)
    return max(0.0, (1 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress))) + min_lr_ratio


def cosine_schedule(optimizer, warmup: int, total: int, settings: dict[str, Any]):
    """A LambdaLR over `cosine_factor` (its state_dict is the step count: resumable as the library's own)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, functools.partial(cosine_factor, warmup=warmup, total=total, **settings))


def one_cycle_schedule(optimizer, max_lr: float, total: int, warmup: int, settings: dict[str, Any]):
    """torch's OneCycleLR as axolotl sets it up: warmup share as pct_start, cosine annealing, unless the settings say
    otherwise. Its own refusals (e.g. a warmup longer than the run) are config errors."""
    from torch.optim.lr_scheduler import OneCycleLR

    options = {"pct_start": warmup / max(1, total), "anneal_strategy": "cos", **settings}
    try:
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, **options)
    except ValueError as error:
        raise UserError(
            f"training_args.lr_scheduler_type: {ONE_CYCLE} over {total} steps with warmup {warmup} "
            f"(pct_start {options['pct_start']:g}): {error}"
        ) from None


class EngineSchedulers:
    """Trainer mixin: builds our schedulers when the arguments ask for one (`engine_schedule`), and hands
    PlateauWithWarmup each evaluation's `eval_loss` (the token-weighted one for SFT, train/evaluation.py, whose mixin
    sets it before `evaluate` returns). Other schedulers are left to the Trainer."""

    _optimizer_steps_per_epoch: int | None = None

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._optimizer_steps_per_epoch = values[1]  # num_update_steps_per_epoch: what W is a fraction of
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        schedule = engine_schedule(self.args)
        if schedule is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        name, settings = schedule
        optimizer = optimizer or self.optimizer
        warmup = self.args.get_warmup_steps(num_training_steps)  # the library's: steps, or a fraction of the run
        if name == PLATEAU_WITH_WARMUP:
            per_epoch = self._optimizer_steps_per_epoch or num_training_steps
            self.lr_scheduler = PlateauWithWarmup(
                optimizer, warmup_steps(self.args.warmup_steps, per_epoch), **settings
            )
        elif name == ONE_CYCLE:
            self.lr_scheduler = one_cycle_schedule(
                optimizer, self.args.learning_rate, num_training_steps, warmup, settings
            )
        else:
            self.lr_scheduler = cosine_schedule(optimizer, warmup, num_training_steps, settings)
        self._created_lr_scheduler = True  # rebuilt by a later train() call, as the Trainer's own
        return self.lr_scheduler

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        loss = metrics.get(f"{kwargs.get('metric_key_prefix', 'eval')}_loss")
        if isinstance(self.lr_scheduler, PlateauWithWarmup) and loss is not None:
            self.lr_scheduler.on_evaluation(loss)
        return metrics
