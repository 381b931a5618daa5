"""Run the `finetuning` CLI with a fault injected at an exact point of training, as a real process would suffer it.

    python -m tests.reliability.faults FAULT [FAULT ...] -- sft config.yaml

FAULT is `EVENT:N:SIGNAL`, e.g. `micro:7:KILL` (SIGKILL this process when the 7th micro-batch starts: mid gradient
accumulation), `save:2:KILL` (during the 2nd checkpoint save, after the weights and optimizer are written but
before the trainer state), `micro:3:TERM` (a SIGTERM, as a scheduler sends), `load:1:INT` (Ctrl-C while the model loads, before training).
Several faults may share a point (`micro:3:TERM micro:4:TERM`: a second signal). The signals are real `os.kill`
deliveries; only *where* they land is arranged, by counting calls of the functions below.

Under a launcher (`torchrun ... -m tests.reliability.faults FAULT -- sft config.yaml`) every process counts its own
calls; a suffix says who is hit: `micro:5:KILL@1` fires in rank 1 only, `micro:4:TERM@launcher` makes rank 0 send
the signal to its parent (torchrun's agent, as `kill LAUNCHER_PID` does) and keeps this micro-batch running until
the launcher's forwarded signal reaches it, so it lands inside that step. SIGNAL `LOG` sends nothing: it prints
`fault point: EVENT N on rank R` to stderr, so a test can count which processes reach a point (`tokenize:1:LOG`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass


def event_points() -> dict[str, tuple[object, str]]:
    """Where each event is counted: one call per micro-batch, one per checkpoint save (mid-save), one per model
    load, one per tokenization of a run's datasets (not when read from the cache), one per VectorLM preprocessing.
    Imported here, not with the module: `__main__` keeps bitsandbytes out first, as the `finetuning` command does."""
    from transformers import Trainer

    import finetuning.data.preference
    import finetuning.data.sft
    import finetuning.data.vectorlm
    import finetuning.sft

    return {
        "micro": (Trainer, "training_step"),
        "save": (Trainer, "_save_rng_state"),
        "load": (finetuning.sft, "load_policy"),
        "tokenize": (finetuning.data.sft, "tokenize_sft_datasets"),
        "tokenize_dpo": (finetuning.data.preference, "tokenize_dpo_datasets"),
        "preprocess": (finetuning.data.vectorlm, "preprocess"),
    }


LAUNCHER = "launcher"
LAUNCHER_WAIT_SECONDS = 60.0  # at most this long the hit micro-batch waits for the forwarded signal


@dataclass(frozen=True)
class Fault:
    event: str
    number: int
    signum: signal.Signals | None  # None: LOG
    target: str | None = None  # None: every process; "0", "1": that rank; LAUNCHER

    def fire(self) -> None:
        rank = os.environ.get("RANK", "0")
        if self.target not in (None, rank) and not (self.target == LAUNCHER and rank == "0"):
            return
        if self.signum is None:
            print(f"fault point: {self.event} {self.number} on rank {rank}", file=sys.stderr, flush=True)
        elif self.target == LAUNCHER:
            _signal_launcher_and_wait(self.signum)
        else:
            os.kill(os.getpid(), self.signum)


def _signal_launcher_and_wait(signum: signal.Signals) -> None:
    """Signal the parent (the launcher) and keep this micro-batch running until the launcher's forwarded signal
    reached this process (its own handler, the engine's, then runs as usual), or LAUNCHER_WAIT_SECONDS passed."""
    arrived = []
    handler = signal.getsignal(signum)

    def note(number, frame):
        arrived.append(number)
        if callable(handler):
            handler(number, frame)

    signal.signal(signum, note)
    try:
        os.kill(os.getppid(), signum)
        deadline = time.monotonic() + LAUNCHER_WAIT_SECONDS
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        signal.signal(signum, handler)


def install(faults: list[Fault]) -> None:
    calls: Counter[str] = Counter()
    points = event_points()
    for event in {fault.event for fault in faults}:
        owner, name = points[event]
        original = getattr(owner, name)

        def counted(*args, _event=event, _original=original, **kwargs):
            calls[_event] += 1
            for fault in faults:
                if fault.event == _event and fault.number == calls[_event]:
                    fault.fire()
            return _original(*args, **kwargs)

        setattr(owner, name, counted)


def parse(spec: str) -> Fault:
    point, _, target = spec.partition("@")
    event, number, name = point.split(":")
    signum = None if name == "LOG" else signal.Signals["SIG" + name]
    return Fault(event, int(number), signum, target or None)


if __name__ == "__main__":
    split = sys.argv.index("--")
    from finetuning.lean_imports import keep_unneeded_libraries_out

    command = sys.argv[split + 1 :]
    keep_unneeded_libraries_out(command[1] if len(command) > 1 else None)  # as `finetuning CMD CONFIG` does
    install([parse(spec) for spec in sys.argv[1:split]])
    from finetuning.cli import main

    sys.exit(main(sys.argv[split + 1 :]))
