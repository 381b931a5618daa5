"""Trainer callbacks whose module does not import transformers.

A callback must subclass `transformers.TrainerCallback` (it supplies the no-op handlers of every event the Trainer
calls), but importing transformers imports torch, and the modules that define our callbacks are also imported by
commands that never train (`finetuning --help`, `schema`, `validate`). `@trainer_callback` keeps the class plain
and mixes `TrainerCallback` in when the first instance is made, which only happens when a trainer is being set up.
Instances are still instances of the decorated class (`isinstance`, `trainer.remove_callback(TheClass)` work).
"""

from __future__ import annotations

import functools


@functools.cache
def _with_trainer_callback(cls: type) -> type:
    from transformers import TrainerCallback

    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "_mixed_in": True}
    return type(cls.__name__, (cls, TrainerCallback), namespace)


def trainer_callback(cls: type) -> type:
    """Class decorator: `cls(...)` returns an instance of `cls` that is also a `TrainerCallback`."""

    def __new__(klass, *args, **kwargs):
        if not klass.__dict__.get("_mixed_in", False):  # the class itself or a plain subclass of it
            klass = _with_trainer_callback(klass)
        return object.__new__(klass)

    cls.__new__ = __new__
    return cls
