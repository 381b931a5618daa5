"""Run the `finetuning` CLI with a fault injected at an exact point of training, as a real process would suffer it.

    python -m tests.reliability.faults FAULT [FAULT ...] -- sft config.yaml

FAULT is `EVENT:N:SIGNAL`, e.g. `micro:7:KILL` (SIGKILL this process when the 7th micro-batch starts: mid gradient
accumulation), `save:2:KILL` (during the 2nd checkpoint save, after the weights and optimizer are written but
before the trainer state), `micro:3:TERM` (a SIGTERM, as a scheduler sends), `load:1:INT` (Ctrl-C while the model loads, before training).
Several faults may share a point (`micro:3:TERM micro:4:TERM`: a second signal). The signals are real `os.kill`
deliveries; only *where* they land is arranged, by counting calls of the functions below.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

from transformers import Trainer

import finetuning.sft

# Where each event is counted: one call per micro-batch, one per checkpoint save (mid-save), one per model load.
EVENTS = {
    "micro": (Trainer, "training_step"),
    "save": (Trainer, "_save_rng_state"),
    "load": (finetuning.sft, "load_policy"),
}


def install(faults: list[tuple[str, int, signal.Signals]]) -> None:
    calls: Counter[str] = Counter()
    for event in {event for event, _, _ in faults}:
        owner, name = EVENTS[event]
        original = getattr(owner, name)

        def counted(*args, _event=event, _original=original, **kwargs):
            calls[_event] += 1
            for fault_event, number, signum in faults:
                if fault_event == _event and number == calls[_event]:
                    os.kill(os.getpid(), signum)
            return _original(*args, **kwargs)

        setattr(owner, name, counted)


def parse(spec: str) -> tuple[str, int, signal.Signals]:
    event, number, name = spec.split(":")
    return event, int(number), signal.Signals["SIG" + name]


if __name__ == "__main__":
    split = sys.argv.index("--")
    install([parse(spec) for spec in sys.argv[1:split]])
    from finetuning.cli import main

    sys.exit(main(sys.argv[split + 1 :]))
