"""SFT specific arguments (`sft_args`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finetuning.config._base import DirectoryName, Int, StrictModel

LengthHandling = Literal["filter", "truncate"]


class SFTArguments(StrictModel):
    """Supervised fine-tuning arguments."""

    max_seq_length: Int = Field(
        2048,
        ge=1,
        description="Maximum input sequence length; longer examples are dropped or truncated (see length_handling).",
    )
    length_handling: LengthHandling = Field(
        "filter",
        description=(
            "What happens to examples longer than max_seq_length: 'filter' drops them, 'truncate' keeps their first "
            "max_seq_length tokens (labels cut the same way). Either way the run summary counts them."
        ),
    )
    save_name_if_new_basemodel: DirectoryName = Field(
        "checkpoint-new-basemodel", description="If a new basemodel is saved, it will be saved with this name"
    )
    train_on_completions_only: bool = Field(False, description="Only compute loss on the assistant's turns.")
