"""Learning-rate overrides: a multiplier, then optional scaling with the total batch size."""

from __future__ import annotations

import math

SCALING = {"none": lambda total: 1.0, "sqrt": math.sqrt, "linear": float}


def scaled_learning_rate(learning_rate: float, multiplier: float, scaling: str, total_batch_size: int) -> float:
    """With scaling, the configured rate is the rate for batch size 1 (Silogen semantics)."""
    return learning_rate * multiplier * SCALING[scaling](total_batch_size)
