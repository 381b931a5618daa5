"""`num_tokens` in the logs (metrics.jsonl) continues across a resume instead of restarting from 0.

TRL's SFT, DPO and KTO trainers keep their running count of training tokens in a plain attribute,
`trainer._total_train_tokens`, set to 0 in `__init__` and never written into a checkpoint: the Trainer saves and
restores only its `TrainerState`. The count is put into that state here, as the state of an `ExportableState`
callback (`trainer_state.json` → `stateful_callbacks`), and read back when a resumed run has loaded its state.
The callback entry also keeps `restore_callback_states_from_checkpoint: true` from warning about an unknown callback.
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class TrainTokenCount(TrainerCallback, ExportableState):
    """Carries TRL's token count into `trainer_state.json`; does nothing during training."""

    def __init__(self, num_tokens: int = 0):
        self.num_tokens = num_tokens

    def state(self) -> dict:
        return {"args": {"num_tokens": self.num_tokens}, "attributes": {}}


class ResumableTokenCount:
    """Trainer mixin (see the module docstring); a trainer without TRL's count is left as it is."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(TrainTokenCount())

    def _save_checkpoint(self, model, trial) -> None:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TrainTokenCount):  # by type: a restored callback replaces the first instance
                callback.num_tokens = getattr(self, "_total_train_tokens", 0)
        super()._save_checkpoint(model, trial)

    def compute_loss(self, model, inputs, *args, **kwargs):
        """TRL counts a batch without an attention mask as one flattened row (`position_ids.size(1)` tokens); packed
        rows kept apart (data/collator.py, PackedRowsCollator) are several: the other rows' slots are added here."""
        positions = inputs.get("position_ids") if "attention_mask" not in inputs else None
        result = super().compute_loss(model, inputs, *args, **kwargs)
        if positions is not None and positions.dim() == 2 and model.training and hasattr(self, "_total_train_tokens"):
            import torch

            others = torch.tensor((positions.shape[0] - 1) * positions.shape[1], device=positions.device)
            self._total_train_tokens += self.accelerator.gather_for_metrics(others).sum().item()
            if hasattr(self, "_metrics"):  # TRL logged the count before this correction
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result

    def _init_training_state(self, *args, **kwargs):
        result = super()._init_training_state(*args, **kwargs)
        if hasattr(self, "_total_train_tokens"):
            saved = self.state.stateful_callbacks.get(TrainTokenCount.__name__) or {}
            saved = saved[0] if isinstance(saved, list) else saved  # the Trainer lists duplicates' states
            # a fresh run (step 0) counts from 0; a resumed one from what its checkpoint had counted
            resumed = self.state.global_step > 0
            self._total_train_tokens = int(saved.get("args", {}).get("num_tokens", 0)) if resumed else 0
        return result
