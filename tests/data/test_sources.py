"""Dataset sources: parquet/csv files and `save_to_disk` directories load through `datasets` and read like JSONL;
their row problems name the row index; a Hub id under HF_HUB_OFFLINE fails in the pre-flight, naming the entry."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from finetuning.cli import main
from finetuning.config import load_any_config
from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.loading import dump_resolved_config
from finetuning.data.inputs import data_fingerprint, read_input
from finetuning.data.readers import DataError, file_digest, forget_read_files, read_file, read_rows, sft_row_problem
from finetuning.errors import UserError
from finetuning.train.preflight import check_batch_sizes, run_preflight
from tests.conftest import sft_config, write_jsonl, write_yaml

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
OTHER = {"messages": [{"role": "user", "content": "r"}, {"role": "assistant", "content": "b"}]}


def test_parquet_and_saved_directory_read_like_jsonl(tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", [GOOD, OTHER])
    Dataset.from_list([GOOD, OTHER]).to_parquet(str(tmp_path / "a.parquet"))
    Dataset.from_list([GOOD, OTHER]).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_list([OTHER]), "test": Dataset.from_list([GOOD, OTHER])}).save_to_disk(
        str(tmp_path / "dict")
    )
    expected = read_rows(str(jsonl), sft_row_problem)
    assert read_rows(str(tmp_path / "a.parquet"), sft_row_problem) == expected
    assert read_rows(str(tmp_path / "saved"), sft_row_problem) == expected
    assert read_rows(str(tmp_path / "dict"), sft_row_problem) == [OTHER]  # a DatasetDict reads `train` by default
    data_input = ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(tmp_path / "dict"), "split": "test"}]},
        validation_data={"type": "NONE"},
    ).training_data
    (part,) = read_input(data_input, sft_row_problem, ("messages",), "data_conf.training_data")
    assert list(part["messages"]) == [row["messages"] for row in expected]


def test_csv_with_a_row_format(tmp_path):
    (tmp_path / "pc.csv").write_text("prompt,completion\nHi,Yo\nBye,Ciao\n", encoding="utf-8")
    data_input = ChatTrainValidConfig(
        training_data={
            "type": "CONCATENATION",
            "datasets": [{"path": str(tmp_path / "pc.csv"), "format": "prompt_completion"}],
        },
        validation_data={"type": "NONE"},
    ).training_data
    (part,) = read_input(data_input, sft_row_problem, ("messages",))
    assert (part["prompt_text"][1], part["completion_text"][1]) == ("Bye", "Ciao")  # string rows: raw text


def test_rows_without_lines_are_named_by_row_index(tmp_path):
    bad = {"messages": [{"role": "robot", "content": "x"}]}
    Dataset.from_list([GOOD, bad]).to_parquet(str(tmp_path / "b.parquet"))
    with pytest.raises(DataError) as error:
        read_rows(str(tmp_path / "b.parquet"), sft_row_problem)
    (problem,) = error.value.problems
    assert problem.startswith(f"{tmp_path / 'b.parquet'}: row 1: messages[0].role is 'robot'")


def test_a_saved_dataset_is_read_once_and_its_digest_follows_its_files(tmp_path):
    saved = tmp_path / "saved"
    Dataset.from_list([GOOD]).save_to_disk(str(saved))
    first = read_file(str(saved))
    assert read_file(str(saved)) is first  # one load per run, shared by the checks, the fingerprint and the recipe
    forget_read_files()
    Dataset.from_list([OTHER]).save_to_disk(str(tmp_path / "other"))
    assert file_digest(str(tmp_path / "other")) not in (None, first.digest)
    Dataset.from_list([GOOD]).save_to_disk(str(tmp_path / "same"))
    assert file_digest(str(tmp_path / "same")) == first.digest  # the same rows saved again: the same digest


def test_hub_id_offline_fails_before_any_model_loads(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    document = sft_config(tmp_path, tiny_model_dir)
    document["data_conf"]["training_data"]["datasets"] = [{"path": "org/name", "split": "train", "revision": "v1"}]
    config = write_yaml(tmp_path / "config.yaml", document)
    expected = (
        "data_conf.training_data.datasets[0].path: 'org/name' is not a local file or directory, and HF_HUB_OFFLINE "
        "is set: "
    )
    cfg = load_any_config(config)
    with pytest.raises(UserError) as caught:
        run_preflight(cfg, check_batch_sizes(cfg), None)  # the checks that run before the model loads
    assert [problem for problem in caught.value.problems if problem.startswith(expected)], caught.value.problems
    assert main(["sft", str(config)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # a Hub dataset's digest is its id, configuration, split, files and revision: another revision is other data
    other = cfg.data_conf.model_copy(deep=True)
    other.training_data.datasets[0].revision = "v2"
    assert data_fingerprint(other, {}) != data_fingerprint(cfg.data_conf, {})


def test_a_missing_local_file_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        read_rows("data/missing.jsonl", sft_row_problem)
    assert error.value.problems == [f"{tmp_path / 'data/missing.jsonl'}: file not found"]


def test_dpo_rows_keep_their_shape(tmp_path, tiny_model_dir):
    document = sft_config(tmp_path, tiny_model_dir)
    document["method"] = "dpo"
    del document["sft_args"]
    document["data_conf"]["training_data"]["datasets"][0]["format"] = "alpaca"
    with pytest.raises(UserError) as caught:
        load_any_config(write_yaml(tmp_path / "dpo.yaml", document))
    assert "data_conf.training_data.datasets[0].format: 'alpaca' applies to SFT data" in str(caught.value)


def test_the_resolved_config_keeps_a_hub_id_as_written(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = sft_config(tmp_path, tiny_model_dir)
    document["data_conf"]["training_data"]["datasets"] = [{"path": "org/name"}, {"path": "data/a.parquet"}]
    dumped = dump_resolved_config(load_any_config(write_yaml(tmp_path / "c.yaml", document)))
    paths = [dataset["path"] for dataset in dumped["data_conf"]["training_data"]["datasets"]]
    assert paths == ["org/name", str(tmp_path / "data/a.parquet")]
