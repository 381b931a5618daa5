"""`data_conf.deduplicate` (issue 15, D4): exact duplicate rows (the same content after the format's conversion)
are dropped within each file before the split, counted in the data report and the run summary; and
`data_conf.num_preprocess_workers` (D5), which the command-line flag overrides."""

from __future__ import annotations

import pytest

from finetuning.config.loading import ConfigError, load_any_config
from finetuning.data.inputs import DataReport, preprocess_workers
from finetuning.tracking.report import RunNumbers, data_rows
from tests.conftest import sft_config, write_jsonl, write_yaml
from tests.data.test_columns_roles import data_conf, sft_examples
from tests.data.test_formats import chat_ml


def turn(user: str, answer: str, **extra) -> dict:
    return {"conversations": [{"from": "human", "value": user, **extra}, {"from": "gpt", "value": answer}]}


# Rows 2 and 4 repeat row 1 once converted (sharegpt reads only from/value); row 3 differs in its answer.
ROWS = [
    turn("Hi", "Yo"),
    turn("Hi", "Yo"),
    turn("Hi", "Hey"),
    turn("Hi", "Yo", note="a second copy"),
    turn("Bye", "Ciao"),
]


def test_duplicates_are_dropped_within_a_file_and_counted(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "chats.jsonl", ROWS)
    other = write_jsonl(tmp_path / "again.jsonl", ROWS[:1])  # a row of the first file: kept, per file
    conf = data_conf(path, {"format": "sharegpt"}, deduplicate=True)
    conf.training_data.datasets.append(conf.training_data.datasets[0].model_copy(update={"path": str(other)}))
    examples, report = sft_examples(tokenizer, conf)
    hi_yo = chat_ml(tokenizer, "Hi", "Yo")
    assert examples == [hi_yo, chat_ml(tokenizer, "Hi", "Hey"), chat_ml(tokenizer, "Bye", "Ciao"), hi_yo]
    assert report.deduplicated == {"training": 2} and report.train_examples == 4

    kept, report = sft_examples(tokenizer, data_conf(path, {"format": "sharegpt"}))  # the default keeps them
    assert len(kept) == len(ROWS) and report.deduplicated == {}


def test_validation_files_are_deduplicated_and_counted_apart(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    validation = write_jsonl(tmp_path / "validation.jsonl", ROWS[:2] + ROWS[:2])
    conf = data_conf(train, {"format": "sharegpt"}, deduplicate=True)
    conf.validation_data = type(conf.training_data).model_validate(
        {"type": "CONCATENATION", "datasets": [{"path": str(validation), "format": "sharegpt"}]}
    )
    _, report = sft_examples(tokenizer, conf)
    assert report.deduplicated == {"training": 2, "validation": 3}
    assert report.eval_examples == 1


def test_the_run_summary_shows_the_duplicates_dropped():
    numbers = RunNumbers(
        steps=1, train_losses=[], eval_losses=[], train_runtime=None, epochs=1.0, tokens_per_second=None
    )
    rows = dict(data_rows(DataReport(train_examples=3, deduplicated={"training": 2, "validation": 0}), numbers))
    assert rows["duplicates dropped"] == "training: 2, validation: 0"
    assert "duplicates dropped" not in dict(data_rows(DataReport(train_examples=3), numbers))


def test_the_workers_flag_wins_over_the_config(tmp_path):
    conf = data_conf(tmp_path / "x.jsonl", num_preprocess_workers=3)
    assert preprocess_workers(None, conf) == 3
    assert preprocess_workers(2, conf) == 2
    assert preprocess_workers(None, data_conf(tmp_path / "x.jsonl")) is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"num_preprocess_workers": 0}, "greater than or equal to 1"),
        ({"deduplicate": "yes please"}, "must be a valid boolean"),
    ],
)
def test_config_errors(tmp_path, tiny_model_dir, changes, problem):
    config = sft_config(tmp_path, tiny_model_dir, data_conf=changes)
    with pytest.raises(ConfigError) as error:
        load_any_config(write_yaml(tmp_path / "c.yaml", config))
    assert f"data_conf.{next(iter(changes))}: must be" in str(error.value) and problem in str(error.value)
