"""Batch size section (`batchsize_conf`).

Users state the effective batch size and what fits on one device; the engine derives the per-device batch size and
gradient accumulation from the number of processes. That is why those keys are forbidden in `training_args`.
"""

from __future__ import annotations

from pydantic import Field

from finetuning.config._base import Int, StrictModel


class BatchsizeConfig(StrictModel):
    """Config for determining the total batch size.

    Total batch size is the effective batch size for the complete training run: number of processes x per-device
    batch size x gradient accumulation. The maximum per-device batch size is what fits in one device's memory.
    """

    total_train_batch_size: Int = Field(ge=1, description="The total batch size for the training run")
    max_per_device_train_batch_size: Int = Field(ge=1, description="The maximum training batch size per device")
    per_device_eval_batch_size: Int | None = Field(
        None,
        ge=1,
        description="The maximum eval batch size per device, if not given, will use same as training batch size",
    )
