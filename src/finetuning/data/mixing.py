"""Combine data files (CONCATENATION, PRECOMPUTE_WEIGHTED_MIX) and split off validation data (AUTO_SPLIT).

Everything here is deterministic given the configured seeds, so a run's exact training order can be reproduced.
AUTO_SPLIT splits each file's distinct examples before the mix repeats them (see `split_sources`), so that no
validation example is also a training example.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
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


def example_keys(dataset: Dataset, batch_size: int = 1000) -> np.ndarray:
    """A 64-bit digest of each example's content (all its columns): identical examples get the same key, so a split
    can keep them together. Read in batches, so no column is held as one Python list."""
    keys = np.empty(len(dataset), dtype=np.uint64)
    position = 0
    for batch in dataset.iter(batch_size=batch_size):
        for row in zip(*batch.values(), strict=True):
            digest = hashlib.blake2b(json.dumps(row, sort_keys=True).encode(), digest_size=8).digest()
            keys[position] = int.from_bytes(digest, "little")
            position += 1
    return keys


def _validation_mask(keys: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Rows whose key is among `ratio` of the distinct keys (rounded up, as HF `train_test_split`), drawn with `rng`;
    at least one distinct example stays for training."""
    distinct = np.unique(keys)
    # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, which must not round up to 4
    count = max(min(math.ceil(round(ratio * len(distinct), 9)), len(distinct) - 1), 0)
    return np.isin(keys, distinct[rng.permutation(len(distinct))[:count]])


def split_sources(parts: list[Dataset], ratio: float, seed: int) -> tuple[list[Dataset], Dataset]:
    """AUTO_SPLIT before mixing: `ratio` of each file's distinct examples go to validation (seeded), the rest stay in
    that file's training part, ready for the mix.

    Splitting per file keeps each file's share in validation, and splitting before the weighted mix means its
    repetitions cannot put copies of a training example into validation. Identical examples (a row written twice)
    stay on one side; one also trained on through another file goes to training."""
    rng = np.random.default_rng(seed)
    keys = [example_keys(part) for part in parts]
    masks = [_validation_mask(part_keys, ratio, rng) for part_keys in keys]
    trained = np.concatenate([part_keys[~mask] for part_keys, mask in zip(keys, masks, strict=True)])
    masks = [mask & ~np.isin(part_keys, trained) for part_keys, mask in zip(keys, masks, strict=True)]
    if not any(mask.any() for mask in masks):
        distinct = max((len(np.unique(part_keys)) for part_keys in keys), default=0)
        raise DataError(
            "data_conf.validation_data: AUTO_SPLIT needs a training file with at least 2 distinct examples to split, "
            f"the largest has {distinct}; add data or give validation data (type: CONCATENATION)"
        )
    train_parts = [part.select(np.flatnonzero(~mask)) for part, mask in zip(parts, masks, strict=True)]
    return train_parts, concatenate(
        [part.select(np.flatnonzero(mask)) for part, mask in zip(parts, masks, strict=True)]
    )


def longest_first(dataset: Dataset, length_column: str = "length") -> Dataset:
    """Sort validation data longest-first, so an out-of-memory batch shows up at the first evaluation step."""
    return dataset.sort(length_column, reverse=True)
