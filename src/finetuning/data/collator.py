"""Batch collation: TRL's padding collator, plus the `unk-convert-to-eos` pad strategy on top of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .tokenize import IGNORE_INDEX

if TYPE_CHECKING:  # importing TRL's SFT trainer module imports torch and transformers: only when a collator is built
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


@dataclass
class UnkToEosCollator:
    """Pad with unk, then show eos on the input side and ignore those positions on the output side.

    Padding looks like eos to the model (as it would after a real end of text) while the loss never sees it.
    """

    inner: DataCollatorForLanguageModeling
    unk_token_id: int
    eos_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        is_unk = batch["input_ids"] == self.unk_token_id
        batch["input_ids"][is_unk] = self.eos_token_id
        batch["labels"][is_unk] = IGNORE_INDEX
        return batch


def build_collator(tokenizer, pad_strategy: str):
    """Right-padding collator for pre-tokenised `input_ids` + `labels` (pad positions are -100 in labels)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    if pad_strategy == "unk-convert-to-eos":
        return UnkToEosCollator(collator, tokenizer.unk_token_id, tokenizer.eos_token_id)
    return collator
