"""`datasets[].format: tokenized`: rows that hold input_ids (and optionally labels) train as given, token by token
through the real SFT data pipeline; bad rows are named by file:line or row index; length limits still apply."""

from __future__ import annotations

import pytest
from datasets import Dataset

from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import SFTArguments
from finetuning.data.readers import DataError
from finetuning.data.sft import build_sft_datasets, sft_data_problems
from finetuning.data.templates import get_template
from finetuning.errors import UserError
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import write_jsonl

IDS = [[1, 40, 41, 42, 2], [1, 50, 51, 2], [1, 60, 2]]
LABELS = [[1, -100, -100, 42, 2], [-100, -100, 51, 2], [1, 60, 2]]


def data_conf(path, **entry) -> ChatTrainValidConfig:
    return ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(path), "format": "tokenized", **entry}]},
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )


def build(conf, tokenizer, completions_only: bool = True, **sft_args):
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), conf)
    args = SFTArguments(max_seq_length=sft_args.pop("max_seq_length", 64), train_on_completions_only=completions_only)
    args = args.model_copy(update=sft_args)
    return build_sft_datasets(conf, args, tokenizer, markers if completions_only else None)


def test_a_saved_vectorlm_dataset_trains_as_given(tmp_path, tokenizer):
    saved = tmp_path / "saved"
    columns = {"input_ids": IDS, "labels": LABELS, "attention_mask": [[1] * len(r) for r in IDS], "id": [0, 1, 2]}
    Dataset.from_dict(columns).save_to_disk(str(saved))
    train, _, report = build(data_conf(saved), tokenizer)
    assert train["input_ids"] == IDS and train["labels"] == LABELS  # no template, no re-tokenisation, masks kept
    assert train["length"] == [5, 4, 3] and train.column_names == ["input_ids", "labels", "length"]
    assert {str(train.features[key].feature) for key in ("input_ids", "labels")} == {"Value('int32')"}
    assert report.without_assistant_marker == 0  # completions-only does not apply to rows trained as given
    assert report.train_tokens == 12 and report.trained_tokens == 12 - 4


def test_labels_default_to_every_token_trained(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [{"input_ids": IDS[0]}, {"input_ids": IDS[1], "labels": LABELS[1]}])
    train, _, _ = build(data_conf(path), tokenizer, completions_only=False)
    assert train["labels"] == [IDS[0], LABELS[1]]


def test_length_handling_still_applies(tmp_path, tokenizer):
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"input_ids": ids, "labels": labels} for ids, labels in zip(IDS, LABELS, strict=True)]
    )
    kept, _, report = build(data_conf(path), tokenizer, max_seq_length=4)
    assert kept["input_ids"] == IDS[1:] and report.dropped_too_long == {"training": 1}
    cut, _, _ = build(data_conf(path), tokenizer, max_seq_length=4, length_handling="truncate")
    assert cut["input_ids"][0] == IDS[0][:4] and cut["labels"][0] == LABELS[0][:4]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"input_id": [1]}, "missing 'input_ids' (keys found: ['input_id']); did you mean 'input_id'?"),
        ({"input_ids": "1 2"}, "'input_ids' must be a list of token ids, got string"),
        ({"input_ids": []}, "'input_ids' is empty"),
        ({"input_ids": [1, True]}, "'input_ids'[1] must be an integer, got boolean"),
        ({"input_ids": [1, 2.5]}, "'input_ids'[1] must be an integer, got number"),
        ({"input_ids": [1, -3]}, "'input_ids' holds -3: token ids are >= 0"),
        ({"input_ids": [1, 2], "labels": [1]}, "'labels' has 1 entries but 'input_ids' 2: one label per token"),
        ({"input_ids": [1, 2], "labels": [1, -1]}, "'labels' holds -1: a label is a token id, or -100"),
        ({"input_ids": [1, 2], "labels": {"a": 1}}, "'labels' must be a list of token ids, got object"),
    ],
)
def test_bad_rows_are_named_by_line(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "t.jsonl", [{"input_ids": [1, 2]}, row])
    (found,) = sft_data_problems(data_conf(path), require_assistant=True)
    assert found.startswith(f"{path}:2: {problem}")


def test_bad_rows_of_a_saved_dataset_are_named_by_row_index(tmp_path, tokenizer):
    saved = tmp_path / "saved"
    Dataset.from_dict({"input_ids": [[1, 2], [3, 4]], "labels": [[1, 2], [3]]}).save_to_disk(str(saved))
    assert sft_data_problems(data_conf(saved), require_assistant=False) == [
        f"{saved}: row 1: 'labels' has 1 entries but 'input_ids' 2: one label per token"
    ]
    with pytest.raises(DataError):
        build(data_conf(saved), tokenizer)


def test_token_ids_beyond_the_tokenizer_are_refused(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [{"input_ids": [1, 100_000]}])
    with pytest.raises(UserError, match="holds token id 100000, but the tokenizer has"):
        build(data_conf(path), tokenizer)
