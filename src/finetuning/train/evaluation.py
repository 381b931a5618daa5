"""Token-weighted evaluation loss for SFT: `eval_loss` = sum of the token losses / number of trained tokens over the
whole validation set (labels != -100 after the causal shift), summed over every process before dividing.

Why: the Trainer's `eval_loss` is the mean of the batches' losses, each batch's loss its mean over its own tokens.
A token in a batch of short examples then weighs more than one in a batch of long ones, so the value moves with the
eval batch size, with the order of the examples and with packing (a packed row is one batch item of many examples):
an evaluation loss that changes when the model does not. The token-weighted loss is the same however the validation
set is batched, padded or packed, and is the number a user checks packing with (packed == unpacked).

How (`TokenWeightedEvalLoss`, a Trainer mixin): TRL's SFTTrainer evaluates each batch to its mean loss over the
batch's trained tokens; times that count it is the batch's sum. Sums and counts add up during the evaluation loop,
are summed across processes at its end, and replace `eval_loss` in the loop's metrics, so what `evaluate()` logs,
returns and hands to callbacks, `metric_for_best_model` / `load_best_model_at_end` and ReduceLROnPlateau is the new
value. TRL's own metrics (mean_token_accuracy, entropy) and `compute_metrics` are computed as before.

With several processes, accelerate completes the last batch of each process with repeats of the first examples
(`even_batches`), so that every process runs the same steps; `gather_for_metrics` drops them from what it gathers.
Here their labels are set to -100 before the loss, so they add nothing either: the loss is the same on any number
of processes. A padding-free batch is one row of many examples; the collator wrapper `RowLengths` records where each
example ends in it, so the repeats can be found there too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
ROW_LENGTHS = "finetuning_row_lengths"  # batch key of RowLengths; popped before the model sees the batch


def evaluation_mixins(trainer_class: type) -> tuple[type, ...]:
    """The evaluation mixins a trainer gets in build_trainer: the token-weighted loss for SFT trainers only (DPO's
    and KTO's evaluation losses are their own objectives, not token means)."""
    from trl import SFTTrainer

    return (TokenWeightedEvalLoss,) if issubclass(trainer_class, SFTTrainer) else ()


@dataclass
class RowLengths:
    """Collator wrapper: adds each example's length to the batch (a class, so that data workers can unpickle it)."""

    inner: Any

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        batch = self.inner(examples)
        batch[ROW_LENGTHS] = torch.tensor([len(example["input_ids"]) for example in examples])
        return batch


def trained_tokens(inputs: dict) -> int:
    """How many tokens the batch's loss is a mean over: labels != -100 after the causal shift (or the collator's own
    `shift_labels`, already shifted), as TRL's fused LM head and transformers' causal-LM loss count them."""
    shifted = inputs.get("shift_labels")
    targets = shifted if shifted is not None else inputs["labels"][..., 1:]
    return int((targets != IGNORE_INDEX).sum())


def without_rows(labels, row_lengths, repeated: int):
    """`labels` with the last `repeated` examples of the batch ignored (-100): rows of a padded batch, or the tail of
    the single row of a padding-free one (examples end to end, `row_lengths` long)."""
    if repeated == 0:
        return labels
    labels = labels.clone()
    if row_lengths is None or labels.shape[0] == len(row_lengths):
        labels[labels.shape[0] - repeated :] = IGNORE_INDEX
    else:
        labels[:, int(row_lengths[:-repeated].sum()) :] = IGNORE_INDEX
    return labels


class TokenWeightedEvalLoss:
    """Trainer mixin: `eval_loss` (and `test_loss` of `predict`) token-weighted over the whole set; see the module
    docstring. Relies on the SFT trainer's batch loss being the mean over `trained_tokens` of that batch."""

    _eval_loss_sum: float = 0.0
    _eval_loss_tokens: int = 0

    def get_eval_dataloader(self, *args, **kwargs):
        loader = super().get_eval_dataloader(*args, **kwargs)
        torch_loader = getattr(loader, "base_dataloader", loader)  # accelerate wraps the torch DataLoader
        if not isinstance(torch_loader.collate_fn, RowLengths):  # a kept loader (persistent workers) is wrapped once
            torch_loader.collate_fn = RowLengths(torch_loader.collate_fn)
        return loader

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._eval_loss_sum, self._eval_loss_tokens = 0.0, 0
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix=metric_key_prefix
        )
        loss_sum, tokens = self._summed_over_processes(self._eval_loss_sum, self._eval_loss_tokens)
        if tokens > 0:  # else (no trained token, every batch non-finite) the Trainer's value stays
            output.metrics[f"{metric_key_prefix}_loss"] = loss_sum / tokens
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        row_lengths = inputs.pop(ROW_LENGTHS, None)
        if inputs.get("labels") is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        repeated = self._repeated_examples(inputs, row_lengths)
        for key in ("labels", "shift_labels"):
            if inputs.get(key) is not None:
                inputs[key] = without_rows(inputs[key], row_lengths, repeated)
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        if loss is not None:
            value = float(loss)
            if math.isfinite(value) or not self.args.logging_nan_inf_filter:  # as the Trainer filters its mean
                tokens = trained_tokens(inputs)
                self._eval_loss_sum += value * tokens
                self._eval_loss_tokens += tokens
        return loss, logits, labels

    def _repeated_examples(self, inputs: dict, row_lengths) -> int:
        """How many examples at the end of this process's batch are accelerate's repeats (see the module docstring).

        In the last batch the gathered order is process 0's examples, then process 1's, …, and the first
        `remainder` of them are real: process p keeps `remainder - p × examples per process`, clamped to its batch.
        """
        accelerator = self.accelerator
        state = accelerator.gradient_state
        if accelerator.num_processes == 1 or not accelerator.even_batches or not state.end_of_dataloader:
            return 0
        if state.remainder <= 0:
            return 0
        if row_lengths is not None:
            examples = len(row_lengths)
        elif "attention_mask" in inputs:
            examples = inputs["labels"].shape[0]
        else:  # a padding-free batch from a loader that did not record where its examples end
            return 0
        real = min(max(state.remainder - accelerator.process_index * examples, 0), examples)
        return examples - real

    def _summed_over_processes(self, loss_sum: float, tokens: int) -> tuple[float, int]:
        if self.accelerator.num_processes == 1:
            return loss_sum, tokens
        import torch

        totals = torch.tensor([loss_sum, float(tokens)], dtype=torch.float64, device=self.accelerator.device)
        totals = self.accelerator.reduce(totals, reduction="sum")
        return float(totals[0]), int(totals[1])
