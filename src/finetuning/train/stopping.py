"""Ending a run early per the `stopping` section (config/stopping.py): the loss watchdog and early stopping.

The loss watchdog is axolotl's LossWatchDogCallback, counted per logging step (axolotl counts every optimizer step
after a logged loss, so with logging_steps > 1 one bad log counts several times) and with a loss that is not a
number counting as too high (a NaN compares false with everything: axolotl would take it for a good loss). When it
trips, the step's checkpoint is saved (the Trainer saves it in the same step, right after the log) and training
ends; train/run.py then records the run as stopped by LOSS_WATCHDOG with `error` set, which the CLI reports as a
user error (non-zero exit) and the tracking runs end FAILED.

Early stopping is transformers' EarlyStoppingCallback. Its count of evaluations without improvement is stored in
each checkpoint's trainer_state.json, but a resumed run reads it back only with
`training_args.restore_callback_states_from_checkpoint: true` (the library's default is to start the count over);
the watchdog's count always starts over on a resume.
"""

from __future__ import annotations

import logging
import math

from ..trainer_callback import trainer_callback

logger = logging.getLogger(__name__)

LOSS_WATCHDOG = "loss watchdog"


@trainer_callback
class LossWatchdog:
    """Stops training once `patience` logged training losses in a row are above `threshold` (or not finite)."""

    def __init__(self, threshold: float, patience: int) -> None:
        self.threshold = threshold
        self.patience = patience
        self.high: list[tuple[int, float]] = []  # (step, loss) of the current run of losses above the threshold
        self.tripped = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None or self.tripped:  # evaluation and summary logs carry no training `loss`
            return control
        if not math.isfinite(loss) or loss > self.threshold:
            self.high.append((state.global_step, loss))
        else:
            self.high.clear()
        if len(self.high) >= self.patience:
            self.tripped = True
            control.should_save = True
            control.should_training_stop = True
            logger.warning("%s", self.message())
        return control

    def message(self) -> str:
        """The one line the run ends with: which threshold, for how long, and the losses seen."""
        seen = ", ".join(f"{loss:.4g} (step {step})" for step, loss in self.high[-self.patience :])
        return (
            f"stopping.loss_threshold: the training loss was above {self.threshold:g} for {self.patience} logging "
            f"steps in a row ({seen}): training stopped at step {self.high[-1][0]}"
        )


def stopping_callbacks(stopping) -> list:
    """The callbacks the `stopping` section asks for (none when it is empty or None)."""
    callbacks = []
    if stopping is None:
        return callbacks
    if stopping.loss_threshold is not None:
        callbacks.append(LossWatchdog(stopping.loss_threshold, stopping.watchdog_patience))
    if stopping.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback

        threshold = stopping.early_stopping_threshold or 0.0
        callbacks.append(EarlyStoppingCallback(stopping.early_stopping_patience, threshold))
    return callbacks


def tripped_watchdog(callbacks: list) -> LossWatchdog | None:
    """The loss watchdog among `callbacks` if it stopped the run."""
    return next((cb for cb in callbacks if isinstance(cb, LossWatchdog) and cb.tripped), None)


def log_early_stop(callbacks: list, state) -> None:
    """One line when early stopping ended training before its planned steps (the final model is saved as usual)."""
    early = next((cb for cb in callbacks if type(cb).__name__ == "EarlyStoppingCallback"), None)
    if early is not None and state.global_step < state.max_steps:
        logger.info(
            "early stopping: %d evaluations without eval_loss improving on the best (%s); training ended at step %d "
            "of %d",
            early.early_stopping_patience_counter,
            state.best_metric,
            state.global_step,
            state.max_steps,
        )
