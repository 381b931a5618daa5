"""The shared data pipeline: every file checked before any is processed, and nothing silently left to train on."""

from __future__ import annotations

import json
import logging

import pytest
from datasets import Dataset

from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import SFTArguments
from finetuning.data.inputs import DataReport, drop_too_long, prepare_splits, read_input
from finetuning.data.readers import DataError, sft_row_problem
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template
from finetuning.data.tokenize import tokenize_conversation
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import CONVERSATION, FACTS, write_jsonl


def test_dropped_examples_are_counted_and_logged(caplog):
    report = DataReport()
    dataset = Dataset.from_dict({"length": [3, 9, 4, 12]})
    with caplog.at_level(logging.WARNING):
        kept = drop_too_long([dataset], 5, "training", report, "sft_args.max_seq_length")
    assert [part["length"] for part in kept] == [[3, 4]]
    assert report.dropped_too_long == {"training": 2}
    assert "training data: dropped 2 of 4 examples longer than sft_args.max_seq_length=5 tokens" in caplog.text


def test_dropping_every_example_is_an_error():
    dataset = Dataset.from_dict({"length": [9, 12]})
    with pytest.raises(DataError) as error:
        drop_too_long([dataset], 5, "validation", DataReport(), "training_args.max_length")
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


def test_auto_split_of_a_weighted_mix_never_validates_on_training_examples(tmp_path, tokenizer):
    """The mix repeats the smaller file's rows and one file holds a row twice: validation still shares no example
    with training, a weight-0 file is nowhere, and the split is the same on a second call (seeded)."""
    smalltalk = FACTS.with_name("smalltalk.jsonl")
    rows = [json.loads(line) for line in smalltalk.read_text(encoding="utf-8").splitlines()]
    doubled = write_jsonl(tmp_path / "doubled.jsonl", rows + rows[:6])  # six rows written twice
    unused = write_jsonl(tmp_path / "unused.jsonl", [{"messages": CONVERSATION}] * 3)
    data_conf = ChatTrainValidConfig(
        training_data={
            "type": "PRECOMPUTE_WEIGHTED_MIX",
            "datasets": [
                {"path": str(FACTS), "sampling_weight": 3.0},
                {"path": str(doubled), "sampling_weight": 1.0},
                {"path": str(unused), "sampling_weight": 0.0},
            ],
        },
        validation_data={"type": "AUTO_SPLIT", "ratio": 0.1},
        chat_template_name="chat-ml",
    )
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf)
    sft_args = SFTArguments(max_seq_length=256, train_on_completions_only=True)
    train, validation, report = build_sft_datasets(data_conf, sft_args, tokenizer, markers)

    trained = {tuple(ids) for ids in train["input_ids"]}
    assert len(train) > len(trained)  # the mix did repeat examples
    assert report.eval_examples == len(validation)
    assert len({tuple(ids) for ids in validation["input_ids"]}) == 10 + 2  # 10% of each file's distinct examples
    assert not [ids for ids in validation["input_ids"] if tuple(ids) in trained]
    unused_ids = tokenize_conversation(CONVERSATION, tokenizer, markers)["input_ids"]
    assert tuple(unused_ids) not in trained | {tuple(ids) for ids in validation["input_ids"]}

    again_train, again_validation, _ = build_sft_datasets(data_conf, sft_args, tokenizer, markers)
    assert again_validation["input_ids"] == validation["input_ids"]
    assert again_train["input_ids"] == train["input_ids"]


def test_token_counts_of_the_report(tmp_path, tokenizer):
    """tokens = every input id of an epoch, trained = those with a label (completions only)."""
    data_conf = ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(FACTS)}]},
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf)
    train, _, report = build_sft_datasets(data_conf, SFTArguments(max_seq_length=256), tokenizer, markers)
    assert report.train_tokens == sum(len(ids) for ids in train["input_ids"]) > 0
    assert report.trained_tokens == sum(label != -100 for labels in train["labels"] for label in labels) > 0
    assert report.trained_tokens < report.train_tokens
