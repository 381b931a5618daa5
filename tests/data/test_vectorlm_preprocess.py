"""`data_conf.preprocess` (VectorLM's dataset preprocessing, data/vectorlm.py): each option on a few rows, token by
token against the tokenizer's own encoding of the pieces VectorLM tokenizes; its errors; and the commands around it
(`finetuning preprocess`, `validate` before the data exists, `sft` preprocessing first)."""

from __future__ import annotations

import logging
import re

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from finetuning.cli import main
from finetuning.config.data import Preprocess
from finetuning.data import vectorlm
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.data.vectorlm import preprocess
from finetuning.errors import UserError
from tests.conftest import sft_config, write_yaml

TEXTS = [
    "Question: What is the capital of Tusello? Answer: Yorren.",
    "Who founded the city of Gimloxan? Lomi did.",  # no separator
    "Question: Which river flows through Takmiqui? Answer: The Yortak river.",
]
SEPARATOR = " Answer:"


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "raw"
    Dataset.from_dict({"text": TEXTS, "source": ["a", "b", "c"]}).save_to_disk(str(path))
    return path


def run(tmp_path, raw, tokenizer, max_seq_len: int = 64, **settings):
    conf = Preprocess(load_path=str(raw), save_path=str(tmp_path / "out"), **settings)
    return preprocess(conf, tokenizer, max_seq_len)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_plain_rows_get_bos_and_eos_strings_and_train_on_everything(tmp_path, raw, tokenizer):
    dataset, report = run(tmp_path, raw, tokenizer, pre_pend="Fact: ")
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    expected = [encode(tokenizer, f"{bos}Fact: {text}{eos}") for text in TEXTS]
    assert dataset["input_ids"] == expected and dataset["labels"] == expected
    assert expected[0][0] == tokenizer.bos_token_id and expected[0][-1] == tokenizer.eos_token_id
    assert dataset["attention_mask"] == [[1] * len(ids) for ids in expected] and dataset["id"] == [0, 1, 2]
    assert dataset.column_names == list(vectorlm.COLUMNS)
    assert load_from_disk(str(tmp_path / "out"))["input_ids"] == expected  # written with save_to_disk
    assert (report.rows_in, report.rows_out, report.dropped_without_separator) == (3, 3, 0)
    assert report.tokens == report.trained_tokens == sum(map(len, expected))


def test_separator_masks_the_prefix_keeps_vectorlms_bos_label_and_counts_the_dropped_rows(tmp_path, raw, tokenizer):
    dataset, report = run(tmp_path, raw, tokenizer, separator=SEPARATOR)
    bos = tokenizer.bos_token
    rows = []
    for text in (TEXTS[0], TEXTS[2]):
        prefix, rest = text.split(SEPARATOR, 1)
        prefix_ids = encode(tokenizer, bos + prefix + SEPARATOR)  # the two parts tokenized alone
        rest_ids = encode(tokenizer, rest + tokenizer.eos_token)
        labels = [tokenizer.bos_token_id] + [IGNORE_INDEX] * (len(prefix_ids) - 1) + rest_ids
        rows.append((prefix_ids + rest_ids, labels))
    assert list(zip(dataset["input_ids"], dataset["labels"], strict=True)) == rows
    assert report.dropped_without_separator == 1 and report.rows_out == 2
    assert tokenizer.decode([t for t in rows[0][1][1:] if t != IGNORE_INDEX]) == " Yorren." + tokenizer.eos_token


def test_separator_without_bos_eos_masks_the_whole_prefix(tmp_path, raw, tokenizer):
    dataset, _ = run(tmp_path, raw, tokenizer, separator=SEPARATOR, add_bos_eos_tokens=False)
    prefix, rest = TEXTS[0].split(SEPARATOR, 1)
    prefix_ids, rest_ids = encode(tokenizer, prefix + SEPARATOR), encode(tokenizer, rest)
    assert dataset["input_ids"][0] == prefix_ids + rest_ids
    assert dataset["labels"][0] == [IGNORE_INDEX] * len(prefix_ids) + rest_ids


def test_all_rows_without_the_separator_is_an_error(tmp_path, raw, tokenizer):
    with pytest.raises(UserError, match="none of the 3 rows contains '###'"):
        run(tmp_path, raw, tokenizer, separator="###")
    assert not (tmp_path / "out").exists()


def test_truncate_keeps_max_seq_len_minus_one_tokens_and_eos(tmp_path, raw, tokenizer):
    dataset, report = run(tmp_path, raw, tokenizer, max_seq_len=8, truncate=True, separator=SEPARATOR)
    prefix = encode(tokenizer, tokenizer.bos_token + TEXTS[0].split(SEPARATOR)[0] + SEPARATOR)
    assert len(prefix) > 8  # the cut falls in the prefix: all but bos and the eos untrained
    eos = tokenizer.eos_token_id
    assert dataset["input_ids"][0] == prefix[:7] + [eos]
    assert dataset["labels"][0] == [tokenizer.bos_token_id] + [IGNORE_INDEX] * 6 + [eos]
    assert report.truncated == 2


def windows_of(rows: list[list[int]], bos: int, eos: int, overlap: int, size: int) -> list[int]:
    """The stream the windows were cut from: each row is bos + window + eos, consecutive windows share `overlap`."""
    stream: list[int] = []
    for index, row in enumerate(rows):
        assert row[0] == bos and row[-1] == eos and len(row) <= size + 2
        inner = row[1:-1]
        if index:
            assert inner[:overlap] == stream[-overlap:] if overlap else True
            inner = inner[overlap:]
        stream += inner
    return stream


def test_full_packing_joins_the_rows_and_wraps_every_chunk_in_bos_and_eos(tmp_path, raw, tokenizer):
    dataset, report = run(tmp_path, raw, tokenizer, max_seq_len=10, packing_type="full", overlap=3)
    joined = [token for text in TEXTS for token in encode(tokenizer, text)]  # no bos/eos strings, no separator token
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = dataset["input_ids"]
    assert all(len(row) == 10 for row in rows[:-1])  # every chunk full but the last
    assert windows_of(rows, bos, eos, overlap=3, size=8) == joined
    assert dataset["labels"] == rows  # bos and eos trained in every chunk, as VectorLM does
    assert report.rows_out == len(rows) and report.rows_in == 3


def test_full_packing_joins_within_each_map_batch_only(tmp_path, raw, tokenizer, monkeypatch):
    monkeypatch.setattr(vectorlm, "PACK_BATCH_ROWS", 2)  # VectorLM's batch is 2,000 rows: the first two, then one
    dataset, _ = run(tmp_path, raw, tokenizer, max_seq_len=12, packing_type="full", add_bos_eos_tokens=False)
    first, last = encode(tokenizer, TEXTS[0]) + encode(tokenizer, TEXTS[1]), encode(tokenizer, TEXTS[2])
    chunks = [first[start : start + 12] for start in range(0, len(first), 12)]
    chunks += [last[start : start + 12] for start in range(0, len(last), 12)]
    assert dataset["input_ids"] == chunks  # without bos/eos the chunks are max_seq_len long


def test_partial_packing_chunks_each_row_alone(tmp_path, raw, tokenizer):
    dataset, _ = run(tmp_path, raw, tokenizer, max_seq_len=8, packing_type="partial", separator=SEPARATOR)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows, labels = dataset["input_ids"], dataset["labels"]
    streams, start = [], 0
    for text in (TEXTS[0], TEXTS[2]):
        prefix, rest = text.split(SEPARATOR, 1)
        prefix_ids, rest_ids = encode(tokenizer, prefix + SEPARATOR), encode(tokenizer, rest)
        count = -(-(len(prefix_ids) + len(rest_ids)) // 6)  # 8 - bos - eos tokens per chunk
        assert windows_of(rows[start : start + count], bos, eos, 0, 6) == prefix_ids + rest_ids
        inner_labels = [token for row in labels[start : start + count] for token in row[1:-1]]
        assert inner_labels == [IGNORE_INDEX] * len(prefix_ids) + rest_ids  # the mask survives chunking
        streams.append(count)
        start += count
    assert len(rows) == sum(streams)


@pytest.mark.parametrize(
    ("settings", "max_seq_len", "message"),
    [
        ({"packing_type": "full", "overlap": 6}, 8, "overlap: 6 must be less than the chunk size"),
        ({"packing_type": "full"}, 2, "leaves no room for tokens between bos and eos"),
        ({"data_field": "txt"}, 64, "has no column 'txt' (columns: text, source); did you mean 'text'?"),
    ],
)
def test_settings_that_cannot_work_are_user_errors(tmp_path, raw, tokenizer, settings, max_seq_len, message):
    with pytest.raises(UserError, match=re.escape(message)):
        run(tmp_path, raw, tokenizer, max_seq_len, **settings)


def test_truncate_with_packing_is_a_config_error_naming_both_keys():
    with pytest.raises(ValueError, match="truncate: true and packing_type: full cannot both be set"):
        Preprocess(load_path="a", save_path="b", truncate=True, packing_type="full")
    with pytest.raises(ValueError, match="overlap: 2 applies to packing only"):
        Preprocess(load_path="a", save_path="b", overlap=2)
    assert Preprocess(load_path="a", save_path="b", seperator="##").separator == "##"  # VectorLM's spelling


def test_a_tokenizer_without_bos_is_refused_with_add_bos_eos_tokens(tmp_path, raw, tokenizer):
    tokenizer.bos_token = None
    with pytest.raises(UserError, match="add_bos_eos_tokens: the tokenizer has no bos token"):
        run(tmp_path, raw, tokenizer)
    dataset, _ = run(tmp_path, raw, tokenizer, add_bos_eos_tokens=False)
    assert dataset["input_ids"][0] == encode(tokenizer, TEXTS[0])


def test_sources_splits_and_offline_hub(tmp_path, tokenizer, monkeypatch):
    saved = tmp_path / "dict"
    DatasetDict(
        {"train": Dataset.from_dict({"text": TEXTS}), "test": Dataset.from_dict({"text": TEXTS[:1]})}
    ).save_to_disk(str(saved))
    with pytest.raises(UserError, match="holds splits train, test and no split is set; set split"):
        run(tmp_path, saved, tokenizer)
    dataset, _ = run(tmp_path, saved, tokenizer, split="test")
    assert len(dataset) == 1
    with pytest.raises(UserError, match="not a directory written by datasets.save_to_disk"):
        run(tmp_path, tmp_path, tokenizer)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UserError, match=r"data_conf.preprocess.load_path: 'someone/corpus' is not a local path, and HF_HUB"
    ):
        run(tmp_path, "someone/corpus", tokenizer, from_disk=False)


def test_a_rerun_replaces_the_saved_dataset(tmp_path, raw, tokenizer):
    run(tmp_path, raw, tokenizer)
    dataset, _ = run(tmp_path, raw, tokenizer, separator=SEPARATOR)
    assert len(load_from_disk(str(tmp_path / "out"))) == len(dataset) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "raw"]  # no temporary directory left


def vectorlm_config(tmp_path, model_dir, raw, **preprocess_settings) -> str:
    save_path = str(tmp_path / "processed")
    config = sft_config(
        tmp_path,
        model_dir,
        data_conf={
            "training_data": {"type": "CONCATENATION", "datasets": [{"path": save_path, "format": "tokenized"}]},
            "preprocess": {"load_path": str(raw), "save_path": save_path, **preprocess_settings},
        },
        training_args={"max_steps": 2},
        batchsize_conf={"total_train_batch_size": 2, "max_per_device_train_batch_size": 2},
        sft_args={"max_seq_length": 16},
    )
    return str(write_yaml(tmp_path / "vectorlm.yaml", config))


def test_preprocess_command_prints_the_counts(tmp_path, raw, tiny_model_dir, capsys):
    path = vectorlm_config(tmp_path, tiny_model_dir, raw, separator=SEPARATOR, packing_type="partial")
    assert main(["preprocess", path]) == 0
    printed = capsys.readouterr().out
    assert f"preprocessed data written to {tmp_path / 'processed'}" in printed
    assert "rows in: 3\nrows dropped without the separator: 1\nrows out: " in printed
    assert "tokenized data cached in " in printed  # then the normal data preparation, on the written rows


def test_validate_says_the_data_is_still_to_be_written(tmp_path, raw, tiny_model_dir, capsys):
    path = vectorlm_config(tmp_path, tiny_model_dir, raw)
    assert main(["validate", path]) == 0
    printed = capsys.readouterr().out
    assert f"data_conf.training_data.datasets[0].path: {tmp_path / 'processed'} does not exist yet" in printed
    assert not (tmp_path / "processed").exists()


def test_sft_preprocesses_first_when_the_dataset_does_not_exist(tmp_path, raw, tiny_model_dir, caplog):
    path = vectorlm_config(tmp_path, tiny_model_dir, raw, packing_type="full")
    caplog.set_level(logging.INFO)
    assert main(["sft", path]) == 0
    said = [r.getMessage() for r in caplog.records if "running data_conf.preprocess first" in r.getMessage()]
    assert said == [
        f"data_conf.training_data.datasets[0].path: {tmp_path / 'processed'} does not exist yet: running "
        "data_conf.preprocess first to write it"
    ]
    assert len(load_from_disk(str(tmp_path / "processed"))) > 0
    assert (tmp_path / "out" / "checkpoint-final").is_dir()
