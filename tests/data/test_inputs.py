"""The shared data pipeline: every file checked before any is processed, and nothing silently left to train on."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset

from finetuning.config.data import ChatTrainValidConfig
from finetuning.data.inputs import DataReport, drop_too_long, prepare_splits, read_input
from finetuning.data.readers import DataError, sft_row_problem
from tests.conftest import write_jsonl


def test_dropped_examples_are_counted_and_logged(caplog):
    report = DataReport()
    dataset = Dataset.from_dict({"length": [3, 9, 4, 12]})
    with caplog.at_level(logging.WARNING):
        kept = drop_too_long(dataset, 5, "training", report, "sft_args.max_seq_length")
    assert kept["length"] == [3, 4]
    assert report.dropped_too_long == {"training": 2}
    assert "training data: dropped 2 of 4 examples longer than sft_args.max_seq_length=5 tokens" in caplog.text


def test_dropping_every_example_is_an_error():
    dataset = Dataset.from_dict({"length": [9, 12]})
    with pytest.raises(DataError) as error:
        drop_too_long(dataset, 5, "validation", DataReport(), "training_args.max_length")
    assert error.value.problems == [
        "training_args.max_length: all 2 validation examples are longer than 5 tokens, so none is left; "
        "raise training_args.max_length or shorten the examples"
    ]


def test_training_and_validation_problems_are_reported_together(tmp_path):
    """Both files are read before the (slow) tokenisation of either, so one run shows every data problem."""
    bad_train = write_jsonl(tmp_path / "train.jsonl", [{"x": 1}])
    data_conf = ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(bad_train)}]},
        validation_data={"type": "CONCATENATION", "datasets": [{"path": str(tmp_path / "missing.jsonl")}]},
    )
    processed = []

    def read(data_input, where):
        return read_input(data_input, sft_row_problem, ("messages",), where)

    with pytest.raises(DataError) as error:
        prepare_splits(data_conf, read, lambda dataset, what: processed.append(what) or dataset)
    assert processed == []
    assert error.value.problems == [
        f"{bad_train}:1: missing 'messages' (keys found: ['x'])",
        f"data_conf.validation_data.datasets[0].path: {tmp_path / 'missing.jsonl'}: file not found",
    ]
