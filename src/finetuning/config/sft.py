"""SFT specific arguments (`sft_args`)."""

from __future__ import annotations

from pydantic import Field

from finetuning.config._base import DirectoryName, Int, StrictModel


class SFTArguments(StrictModel):
    """Supervised fine-tuning arguments."""

    max_seq_length: Int = Field(
        2048, ge=1, description="Maximum length input sequence length. Longer sequences will be filtered out."
    )
    save_name_if_new_basemodel: DirectoryName = Field(
        "checkpoint-new-basemodel", description="If a new basemodel is saved, it will be saved with this name"
    )
    train_on_completions_only: bool = Field(False, description="Only compute loss on the assistant's turns.")
