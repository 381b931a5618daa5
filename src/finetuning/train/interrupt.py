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

from ..trainer_callback import trainer_callback
from .distributed import is_main_process

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@trainer_callback  # a TrainerCallback once made, without importing transformers with this module
class GracefulStop:
    """Installed around `trainer.train()`; `stopped_by` names the signal once a stop was requested."""

    def __init__(self) -> None:
        self.stopped_by: str | None = None
        self._previous: dict[int, object] = {}
        self._owner = os.getpid()  # forked children inherit the handler, not the right to act on it

    def __enter__(self) -> GracefulStop:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self._owner:  # a forked child (DataLoader worker) inherited it: see ShieldedDataWorkers
            return
        name = signal.Signals(signum).name
        if self.stopped_by is not None:
            print(f"\n{name} again: aborting now, without saving", file=sys.stderr, flush=True)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # die as if never handled: the exit status still says which signal
            return
        self.stopped_by = name
        if not is_main_process():  # a launcher (torchrun) forwards the signal to every process: one says it
            return
        print(
            f"\n{name} received: finishing this step, saving a checkpoint, then stopping "
            f"(send {name} again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def _stop_requested(self, args) -> bool:
        """In a multi-process run every rank must stop at the same step, even if only one got the signal (a `kill`
        of one process) or they got it on either side of a step's end (torchrun forwarding its SIGTERM): the flags
        are reduced at every step end, so all ranks save their part of the same checkpoint and stop together."""
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


class _IgnoreStopSignals:
    """worker_init_fn wrapper (a class, so spawned workers can unpickle it): ignore SIGTERM / SIGINT, then run the
    Trainer's own init (seeding)."""

    def __init__(self, init_fn) -> None:
        self.init_fn = init_fn

    def __call__(self, worker_id: int) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if self.init_fn is not None:
            self.init_fn(worker_id)


class ShieldedDataWorkers:
    """Trainer mixin: DataLoader worker processes ignore SIGTERM / SIGINT.

    Ctrl-C and schedulers (Slurm's scancel) signal the whole process group. A worker killed by it makes the main
    process fail mid-step ("DataLoader worker is killed by signal"), before the graceful stop can save; the workers
    must keep feeding batches until the step ends, and the main process shuts them down as usual.
    """

    def get_train_dataloader(self):
        return _shield(super().get_train_dataloader())

    def get_eval_dataloader(self, *args, **kwargs):
        return _shield(super().get_eval_dataloader(*args, **kwargs))


def _shield(loader):
    torch_loader = getattr(loader, "base_dataloader", loader)  # accelerate wraps the torch DataLoader
    if getattr(torch_loader, "num_workers", 0) > 0:
        torch_loader.worker_init_fn = _IgnoreStopSignals(torch_loader.worker_init_fn)
    return loader
