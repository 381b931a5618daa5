"""Bounded memory: after tokenisation, no step holds a whole column as Python objects.

Length handling, the mix and the token counts work on memory-mapped Arrow
data batch by batch, so the Python heap they need does not grow with the number of examples. tracemalloc counts
Python (and numpy) allocations, not Arrow's buffers: a regression such as `sum(dataset["length"])` or
`dataset["labels"]` as lists shows up as peak growth proportional to the data.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import SFTArguments
from finetuning.data.inputs import DataReport, prepare_splits
from finetuning.data.sft import _token_counts, limit_length

MAX_LENGTH = 32


def tokenized_on_disk(path, rows: int) -> Dataset:
    """A tokenised SFT dataset of `rows` short examples (8-47 tokens), saved and memory-mapped as the pipeline's are."""
    rng = np.random.default_rng(rows)
    lengths = rng.integers(8, 48, size=rows)
    ids = [rng.integers(0, 500, size=n).tolist() for n in lengths]
    labels = [[-100] * (len(row) // 2) + row[len(row) // 2 :] for row in ids]
    Dataset.from_dict({"input_ids": ids, "labels": labels, "length": lengths.tolist()}).save_to_disk(path)
    del ids, labels
    return load_from_disk(path)


def peak_after_tokenisation(tmp_path, rows: int, length_handling: str) -> int:
    """Peak Python allocation (bytes) of length handling → concatenation → token counts over `rows` examples.
    Left out: AUTO_SPLIT (data/mixing.py example_keys, batch-wise but slow at this size) and the longest-first sort
    of validation, whose `datasets.select` lists the sorted indices as Python objects (40 bytes a row)."""
    dataset = tokenized_on_disk(tmp_path / f"data-{rows}", rows)
    data_conf = ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": "tokenized"}]},
        validation_data={"type": "NONE"},
    )
    sft_args = SFTArguments(max_seq_length=MAX_LENGTH, length_handling=length_handling)
    report = DataReport()
    gc.collect()
    tracemalloc.start()
    try:
        train, evaluation = prepare_splits(
            data_conf,
            lambda data_input, where: [dataset],
            lambda parts, what: limit_length(parts, sft_args, what, report),
        )
        tokens, trained = _token_counts(train)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tokens > 0 and trained > 0 and evaluation is None
    return peak


@pytest.mark.parametrize("length_handling", ["filter", "truncate"])
def test_peak_python_memory_grows_well_under_the_data(tmp_path, length_handling):
    small = peak_after_tokenisation(tmp_path, 20_000, length_handling)
    large = peak_after_tokenisation(tmp_path, 80_000, length_handling)
    assert large < 2.0 * small, f"4x the rows took {large / small:.2f}x the peak ({small} → {large} bytes)"
