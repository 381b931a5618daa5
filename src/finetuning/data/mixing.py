"""Combine data files (CONCATENATION, PRECOMPUTE_WEIGHTED_MIX) and split off validation data (AUTO_SPLIT).

Everything here is deterministic given the configured seeds, so a run's exact training order can be reproduced.
"""

from __future__ import annotations

from datasets import Dataset, concatenate_datasets, interleave_datasets

from .readers import DataError


def concatenate(parts: list[Dataset]) -> Dataset:
    """Datasets in the listed order, one after the other."""
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def weighted_mix(parts: list[Dataset], weights: list[float], seed: int) -> Dataset:
    """Interleave until every example of every dataset has been drawn at least once ("all_exhausted").

    Weight 0 drops a dataset. All weights 1.0 is an exact round-robin (smaller datasets cycle, length
    max(n_i) x k); otherwise draws follow the probabilities w / sum(w), seeded.
    """
    if any(weight < 0 for weight in weights):
        raise DataError("sampling weights must be >= 0")
    kept = [(part, weight) for part, weight in zip(parts, weights, strict=True) if weight > 0]
    if not kept:
        raise DataError("all sampling weights are 0: nothing to train on")
    datasets = [part for part, _ in kept]
    if len(datasets) == 1:
        return datasets[0]
    if all(weight == 1.0 for _, weight in kept):
        return interleave_datasets(datasets, stopping_strategy="all_exhausted")
    total = sum(weight for _, weight in kept)
    probabilities = [weight / total for _, weight in kept]
    return interleave_datasets(datasets, probabilities=probabilities, seed=seed, stopping_strategy="all_exhausted")


def auto_split(dataset: Dataset, ratio: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split off `ratio` of the examples for validation (HF `train_test_split`, seeded)."""
    if len(dataset) < 2:
        raise DataError(
            f"data_conf.validation_data: AUTO_SPLIT needs at least 2 training examples to split, there are {len(dataset)}"
        )
    split = dataset.train_test_split(test_size=ratio, seed=seed)
    return split["train"], split["test"]


def longest_first(dataset: Dataset, length_column: str = "length") -> Dataset:
    """Sort validation data longest-first, so an out-of-memory batch shows up at the first evaluation step."""
    return dataset.sort(length_column, reverse=True)
