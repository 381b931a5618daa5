"""Batch collation: TRL's padding collator; for packed rows (sft_args.packing), a batch whose documents cannot see each
other, in the form the attention implementation separates cheaply; the `unk-convert-to-eos` pad strategy on top."""

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

    inner: DataCollatorForLanguageModeling | PackedCollator | PackedRowsCollator
    unk_token_id: int
    eos_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        is_unk = batch["input_ids"] == self.unk_token_id
        batch["input_ids"][is_unk] = self.eos_token_id
        batch["labels"][is_unk] = IGNORE_INDEX
        return batch


# Attention implementations that separate packed documents through a mask built from position_ids (transformers'
# masking_utils), row by row: a flattened batch would make that mask (rows × length)² instead of rows × length².
MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")


def position_ids(seq_lengths: list[int]):
    """0, 1, ... restarting at each document of a packed row."""
    import torch

    return torch.cat([torch.arange(length) for length in seq_lengths])


@dataclass
class PackedRowsCollator:
    """Packed rows, one per batch row, for the masked attentions (MASKED_ATTENTION): position ids restart at each
    document (from the rows' `seq_lengths`), the first label of each document is ignored, and there is no attention
    mask, whose presence would turn the document separation off. Padding at a row's end gets position 0 at every
    token, so each pad is a one-token document of its own, never attended by the row's real tokens.

    `use_cache: False` goes with every batch: a model that builds a KV cache in its forward (config.use_cache, the
    default of most checkpoints) skips the packed-sequence mask (transformers' masking_utils), and its packed documents
    would then attend to each other.
    """

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.as_tensor(example["input_ids"])
            labels[row, :length] = torch.as_tensor(example.get("labels", example["input_ids"]))
            positions[row, :length] = position_ids(example.get("seq_lengths") or [length])
        labels[positions == 0] = IGNORE_INDEX  # never predict a document from the previous one
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions, "use_cache": False}


@dataclass
class PackedCollator:
    """Packed rows flattened into one padding-free row, for the varlen kernels (flash attention, hub kernels), which
    separate documents by the cu_seq_lens TRL's padding-free collator adds: documents one after the other, position
    ids restarting at each, the first label of each document ignored, no attention mask; `use_cache: False` as above.
    """

    inner: DataCollatorForLanguageModeling

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        batch["use_cache"] = False
        return batch


def build_collator(tokenizer, pad_strategy: str, packing=False, attention: str | None = None):
    """Right-padding collator for pre-tokenised `input_ids` + `labels` (pad positions are -100 in labels). With
    `packing` (sft_args.packing) that separates documents: PackedRowsCollator for a masked `attention` (the model's
    attention implementation), the flattened PackedCollator for any other (the varlen kernels; also exact, only
    slower, for the masked ones). Packing without separate_documents collates its rows as any others: positions run on
    and a row's documents see each other."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    if packing and packing.separate_documents and attention in MASKED_ATTENTION:
        collator = PackedRowsCollator(tokenizer.pad_token_id)
    elif packing and packing.separate_documents:
        collator = PackedCollator(DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=True))
    else:
        collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    if pad_strategy == "unk-convert-to-eos":
        return UnkToEosCollator(collator, tokenizer.unk_token_id, tokenizer.eos_token_id)
    return collator
