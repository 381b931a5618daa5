"""Graceful stop: the first SIGTERM / SIGINT (pre-emption, scancel, Ctrl-C) finishes the optimizer step under way,
saves a checkpoint and ends training cleanly; a second one aborts at once.

Cluster schedulers send SIGTERM some seconds before SIGKILL; finishing one step and saving usually fits, and the
run resumes from exactly there with `run_conf.resume_from_checkpoint: auto`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(TrainerCallback):
    """Installed around `trainer.train()`; `stopped_by` names the signal once a stop was requested."""

    def __init__(self) -> None:
        self.stopped_by: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.stopped_by is not None:
            print(f"\n{name} again: aborting now, without saving", file=sys.stderr, flush=True)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # die as if never handled: the exit status still says which signal
            return
        self.stopped_by = name
        print(
            f"\n{name} received: finishing this step, saving a checkpoint, then stopping "
            f"(send {name} again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def _stop_requested(self, args) -> bool:
        """In a multi-process run every rank must stop at the same step, even if only one got the signal."""
        requested = self.stopped_by is not None
        if args.world_size > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([int(requested)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and not requested:
                self.stopped_by = "a signal to another process"
            requested = bool(flag.item())
        return requested

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_requested(args) and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
        return control

    def interrupted(self, state) -> bool:
        """Stopped before the planned end (a signal on the very last step just lets the run finish)."""
        return self.stopped_by is not None and state.global_step < state.max_steps
