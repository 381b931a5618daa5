"""What every method's data pipeline shares: config data inputs → datasets, length filtering, the data report.

A data input is a CONCATENATION or PRECOMPUTE_WEIGHTED_MIX section of `data_conf`; its rows are checked by a
method-specific `row_problem` function (SFT messages, DPO pairs, KTO examples) so that errors carry file:line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from datasets import Dataset

from .mixing import auto_split, concatenate, longest_first, weighted_mix
from .readers import read_all

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """Counts a user wants to see after preprocessing (printed in the run summary)."""

    train_examples: int = 0
    eval_examples: int = 0
    dropped_too_long: dict[str, int] = field(default_factory=dict)
    without_assistant_marker: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0


def read_input(data_input, row_problem: Callable[[dict], str | None], columns: tuple[str, ...]) -> list[Dataset]:
    """Validate and load every file of a data input, one dataset per file.

    Only `columns` are kept: optional metadata keys differ between files and would block concatenation.
    """
    paths = [dataset.path for dataset in data_input.datasets]
    return [
        Dataset.from_dict({column: [row.get(column) for row in rows] for column in columns})
        for rows in read_all(paths, row_problem)
    ]


def map_workers(num_proc: int | None, dataset: Dataset) -> int | None:
    """`datasets.map(num_proc=...)`: worker processes only when asked for and when there is more than one row."""
    return num_proc if num_proc and num_proc > 1 and len(dataset) > 1 else None


def combine(data_input, parts: list[Dataset]) -> Dataset:
    if data_input.type == "PRECOMPUTE_WEIGHTED_MIX":
        weights = [dataset.sampling_weight for dataset in data_input.datasets]
        return weighted_mix(parts, weights, data_input.seed)
    return concatenate(parts)


def validate_inputs(data_conf, row_problem: Callable[[dict], str | None]) -> int:
    """Read and check every file the config names; raises DataError listing all problems; returns the file count."""
    inputs = [data_conf.training_data]
    if data_conf.validation_data.type == "CONCATENATION":
        inputs.append(data_conf.validation_data)
    paths = [dataset.path for data_input in inputs for dataset in data_input.datasets]
    read_all(paths, row_problem)
    return len(paths)


def drop_too_long(dataset: Dataset, max_length: int, what: str, report: DataReport, setting: str) -> Dataset:
    """Drop (and count, and say) examples whose `length` exceeds `max_length`; never truncate silently."""
    kept = dataset.filter(lambda lengths: [n <= max_length for n in lengths], input_columns="length", batched=True)
    dropped = len(dataset) - len(kept)
    report.dropped_too_long[what] = dropped
    if dropped:
        logger.warning(
            "%s data: dropped %d of %d examples longer than %s=%d tokens",
            what,
            dropped,
            len(dataset),
            setting,
            max_length,
        )
    return kept


def prepare_splits(
    data_conf,
    read: Callable[[object], list[Dataset]],
    process: Callable[[Dataset, str], Dataset],
) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets in the Silogen order: read → mix → process (tokenise, drop too long) →
    AUTO_SPLIT, so the split ratio applies to usable examples; validation sorted longest-first (OOM shows at once)."""
    train = process(combine(data_conf.training_data, read(data_conf.training_data)), "training")
    validation_conf = data_conf.validation_data
    evaluation = None
    if validation_conf.type == "AUTO_SPLIT":
        train, evaluation = auto_split(train, validation_conf.ratio, validation_conf.seed)
    elif validation_conf.type == "CONCATENATION":
        evaluation = process(concatenate(read(validation_conf)), "validation")
    if evaluation is not None and "length" in evaluation.column_names:  # untokenised data (KTO) stays as it is
        evaluation = longest_first(evaluation)
    return train, evaluation
