"""Stopping a run early (`stopping`): the loss watchdog and early stopping on the evaluation loss (train/stopping.py).

Both end a run before its planned steps, in opposite spirits: the watchdog ends a run that went wrong (a diverging
loss: a checkpoint to look at, a failed status, a non-zero exit), early stopping a run that is done learning (the
final model is saved as usual).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from finetuning.config._base import Float, Int, StrictModel

DEFAULT_LOSS_PATIENCE = 3  # axolotl's loss_watchdog_patience default


class StoppingConfig(StrictModel):
    """When to end a run before its planned steps."""

    loss_threshold: Float | None = Field(
        None,
        description=(
            "Loss watchdog: stop the run when the training loss (as logged, every training_args.logging_steps) is "
            "above this value, or not a number, for loss_patience logging steps in a row. The run saves a "
            "checkpoint there and ends as failed (the command exits non-zero, naming the threshold and the losses "
            "seen). axolotl's loss_watchdog_threshold."
        ),
    )
    loss_patience: Annotated[Int, Field(ge=1)] | None = Field(
        None,
        description=(
            f"How many consecutive logging steps above loss_threshold stop the run (default {DEFAULT_LOSS_PATIENCE}). "
            "axolotl's loss_watchdog_patience."
        ),
    )
    early_stopping_patience: Annotated[Int, Field(ge=1)] | None = Field(
        None,
        description=(
            "Early stopping (transformers' EarlyStoppingCallback): end training after this many evaluations in a row "
            "without the evaluation loss improving on the best one by more than early_stopping_threshold; the final "
            "model is saved as usual. Needs evaluations (training_args.eval_strategy and validation data); "
            "training_args.metric_for_best_model defaults to eval_loss. A resumed run counts afresh unless "
            "training_args.restore_callback_states_from_checkpoint is true."
        ),
    )
    early_stopping_threshold: Annotated[Float, Field(ge=0)] | None = Field(
        None,
        description="How much the evaluation loss must improve to count as an improvement (default 0).",
    )

    @property
    def watchdog_patience(self) -> int:
        return self.loss_patience or DEFAULT_LOSS_PATIENCE


def stopping_problems(stopping: StoppingConfig, training_args: dict) -> list[str]:
    """Settings without the switch they tune, and early stopping without evaluations to count (it would never stop
    early; transformers fails at the start of training)."""
    problems = []
    if stopping.loss_patience is not None and stopping.loss_threshold is None:
        problems.append("stopping.loss_patience: only applies with stopping.loss_threshold; set that too")
    if stopping.early_stopping_threshold is not None and stopping.early_stopping_patience is None:
        problems.append(
            "stopping.early_stopping_threshold: only applies with stopping.early_stopping_patience; set that too"
        )
    if stopping.early_stopping_patience is not None and training_args.get("eval_strategy") in (None, "no"):
        problems.append(
            "stopping.early_stopping_patience: counts evaluations without improvement, so it needs evaluations: set "
            "training_args.eval_strategy (steps or epoch, with eval_steps) and validation data"
        )
    return problems
