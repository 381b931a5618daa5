"""SFT data pipeline: read → mix → tokenise → drop too-long → split → sort validation longest-first.

The order follows the Silogen engine: AUTO_SPLIT happens after tokenisation and length filtering, so the validation
ratio applies to the examples that are actually usable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from datasets import Dataset

from .mixing import auto_split, concatenate, longest_first, weighted_mix
from .readers import DataError, read_all, sft_row_problem
from .templates import Markers
from .tokenize import tokenize_batch

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """Counts a user wants to see after preprocessing (also used by the run summary)."""

    train_rows_read: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    dropped_too_long: dict[str, int] = field(default_factory=dict)
    without_assistant_marker: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0


def _row_checker(require_assistant: bool):
    return lambda row: sft_row_problem(row, require_assistant)


def _as_dataset(rows: list[dict]) -> Dataset:
    """Keep only the messages: optional metadata columns differ between files and would block concatenation."""
    return Dataset.from_dict({"messages": [row["messages"] for row in rows]})


def read_sft_inputs(data_input, require_assistant: bool) -> list[Dataset]:
    """Validate and load every file of a CONCATENATION / PRECOMPUTE_WEIGHTED_MIX input."""
    paths = [dataset.path for dataset in data_input.datasets]
    return [_as_dataset(rows) for rows in read_all(paths, _row_checker(require_assistant))]


def combine(data_input, parts: list[Dataset]) -> Dataset:
    if data_input.type == "PRECOMPUTE_WEIGHTED_MIX":
        weights = [dataset.sampling_weight for dataset in data_input.datasets]
        return weighted_mix(parts, weights, data_input.seed)
    return concatenate(parts)


def validate_sft_data(data_conf, require_assistant: bool) -> None:
    """Read and check every file the config names (for `finetuning validate` and pre-flight); raises DataError."""
    read_sft_inputs(data_conf.training_data, require_assistant)
    if data_conf.validation_data.type == "CONCATENATION":
        read_sft_inputs(data_conf.validation_data, require_assistant)


def _tokenize(dataset: Dataset, tokenizer, markers: Markers | None, num_proc: int | None, what: str) -> Dataset:
    return dataset.map(
        tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "markers": markers},
        remove_columns=dataset.column_names,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1 else None,
        desc=f"Tokenizing {what} data",
    )


def _drop_too_long(dataset: Dataset, max_seq_length: int, what: str, report: DataReport) -> Dataset:
    kept = dataset.filter(lambda lengths: [n <= max_seq_length for n in lengths], input_columns="length", batched=True)
    dropped = len(dataset) - len(kept)
    report.dropped_too_long[what] = dropped
    if dropped:
        logger.warning(
            "%s data: dropped %d of %d examples longer than sft_args.max_seq_length=%d tokens",
            what,
            dropped,
            len(dataset),
            max_seq_length,
        )
    return kept


def build_sft_datasets(
    data_conf, sft_args, tokenizer, markers: Markers | None, num_proc: int | None = None
) -> tuple[Dataset, Dataset | None, DataReport]:
    """Return tokenised (train, validation or None, report); columns input_ids, labels, length."""
    report = DataReport()
    completions_only = markers is not None
    train = combine(data_conf.training_data, read_sft_inputs(data_conf.training_data, completions_only))
    report.train_rows_read = len(train)
    train = _drop_too_long(
        _tokenize(train, tokenizer, markers, num_proc, "training"), sft_args.max_seq_length, "training", report
    )

    validation_conf = data_conf.validation_data
    evaluation = None
    if validation_conf.type == "AUTO_SPLIT":
        train, evaluation = auto_split(train, validation_conf.ratio, validation_conf.seed)
    elif validation_conf.type == "CONCATENATION":
        evaluation = concatenate(read_sft_inputs(validation_conf, completions_only))
        evaluation = _tokenize(evaluation, tokenizer, markers, num_proc, "validation")
        evaluation = _drop_too_long(evaluation, sft_args.max_seq_length, "validation", report)
    if evaluation is not None:
        evaluation = longest_first(evaluation)

    if completions_only:
        report.without_assistant_marker = sum(1 for turns in train["assistant_turns"] if turns == 0)
        if report.without_assistant_marker:
            logger.warning(
                "%d training examples contain no assistant start marker %r: they train on nothing",
                report.without_assistant_marker,
                markers.assistant_start,
            )
    report.train_examples = len(train)
    report.eval_examples = 0 if evaluation is None else len(evaluation)
    report.train_tokens = sum(train["length"])
    report.trained_tokens = sum(sum(1 for label in labels if label != -100) for labels in train["labels"])
    if report.train_examples == 0:
        raise DataError(
            [f"no training examples left after dropping those longer than {sft_args.max_seq_length} tokens"]
        )
    train = train.remove_columns("assistant_turns")
    if evaluation is not None:
        evaluation = evaluation.remove_columns("assistant_turns")
    return train, evaluation, report
