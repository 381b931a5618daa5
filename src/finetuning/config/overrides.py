"""Overrides section (`overrides`).

A few training knobs brought to the top level, so that a chart's values file can change them without repeating the
whole `training_args` block.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finetuning.config._base import Float, StrictModel


class Overrides(StrictModel):
    """Override options that give a simple interface for charts using these configs."""

    num_train_epochs: Float | None = Field(
        None, gt=0, description="Overrides the number of epochs in the training_args"
    )
    lr_multiplier: Float = Field(1.0, gt=0, description="Multiplier applied to the learning rate in the training_args")
    lr_batch_size_scaling: Literal["none", "sqrt", "linear"] = Field(
        "none",
        description=(
            "Scales the learning rate in the training_args by a factor derived from the total training batch size. "
            "`none`: No scaling. `sqrt`: Multiplies learning rate by square root of batch size (a classic scaling "
            "rule). `linear`: Multiplies learning rate by the batch size (a more modern scaling rule)."
        ),
    )
