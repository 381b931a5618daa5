"""Mixing and splitting: orders, proportions, seeds (reproducible), sizes."""

from __future__ import annotations

from collections import Counter

import pytest
from datasets import Dataset

from finetuning.data.mixing import concatenate, longest_first, split_sources, weighted_mix
from finetuning.data.readers import DataError


def named(name: str, n: int) -> Dataset:
    return Dataset.from_dict({"source": [name] * n, "index": list(range(n))})


def sources(dataset: Dataset) -> list[str]:
    return dataset["source"]


def test_concatenation_keeps_listed_order():
    mixed = concatenate([named("a", 2), named("b", 3)])
    assert sources(mixed) == ["a", "a", "b", "b", "b"]


def test_all_weights_one_is_exact_round_robin_with_oversampling():
    mixed = weighted_mix([named("a", 3), named("b", 1)], [1.0, 1.0], seed=1)
    assert len(mixed) == 3 * 2  # max(n_i) x k
    assert sources(mixed) == ["a", "b"] * 3
    assert mixed["index"] == [0, 0, 1, 0, 2, 0]  # the smaller dataset cycles


def test_weighted_proportions_and_every_example_drawn():
    parts = [named("a", 900), named("b", 900), named("c", 200)]
    mixed = weighted_mix(parts, [4.5, 4.5, 1.0], seed=19851243)
    counts = Counter(sources(mixed))
    total = sum(counts.values())
    for name, expected in {"a": 0.45, "b": 0.45, "c": 0.10}.items():
        assert counts[name] / total == pytest.approx(expected, abs=0.03)
    for name, n in (("a", 900), ("b", 900), ("c", 200)):  # "all_exhausted": nothing is left out
        assert set(i for s, i in zip(mixed["source"], mixed["index"], strict=True) if s == name) == set(range(n))


def test_weighted_mix_is_reproducible_and_seed_dependent():
    parts = [named("a", 50), named("b", 50)]
    first = sources(weighted_mix(parts, [3.0, 1.0], seed=7))
    assert first == sources(weighted_mix(parts, [3.0, 1.0], seed=7))
    assert first != sources(weighted_mix(parts, [3.0, 1.0], seed=8))


def test_zero_weight_skips_a_dataset_and_all_zero_is_an_error():
    assert set(sources(weighted_mix([named("a", 5), named("b", 5)], [1.0, 0.0], seed=1))) == {"a"}
    with pytest.raises(DataError, match="all sampling weights are 0"):
        weighted_mix([named("a", 5)], [0.0], seed=1)


def test_split_sources_takes_the_ratio_of_each_file_seeded():
    parts = [named("a", 100), named("b", 10)]
    train, validation = split_sources(parts, 0.2, seed=1289525893)
    assert [len(part) for part in train] == [80, 8]
    assert Counter(sources(validation)) == {"a": 20, "b": 2}
    for part in train:
        name = part["source"][0]
        held_out = {
            index for source, index in zip(validation["source"], validation["index"], strict=True) if source == name
        }
        assert held_out.isdisjoint(part["index"])
    again_train, again_validation = split_sources(parts, 0.2, seed=1289525893)
    assert validation["index"] == again_validation["index"] and train[0]["index"] == again_train[0]["index"]
    _, other_validation = split_sources(parts, 0.2, seed=5)
    assert validation["index"] != other_validation["index"]


def test_split_sources_keeps_identical_examples_on_one_side():
    """A row written twice in a file, or present in two files, is never both validated and trained on."""
    doubled = Dataset.from_dict({"text": [f"row {i}" for i in range(20)] * 2})
    other = Dataset.from_dict({"text": [f"row {i}" for i in range(10)] + [f"other {i}" for i in range(10)]})
    train, validation = split_sources([doubled, other], 0.5, seed=3)
    trained = {text for part in train for text in part["text"]}
    assert validation["text"] and trained.isdisjoint(validation["text"])
    assert len(train[0]) + len(train[1]) + len(validation) == 60  # every row kept, on one side


def test_split_sources_needs_two_distinct_examples():
    with pytest.raises(DataError, match="AUTO_SPLIT needs a training file with at least 2 distinct examples"):
        split_sources([Dataset.from_dict({"text": ["same"] * 5}), named("b", 1)], 0.2, seed=1)


def test_validation_sorted_longest_first():
    data = Dataset.from_dict({"length": [3, 9, 1, 5]})
    assert longest_first(data)["length"] == [9, 5, 3, 1]
