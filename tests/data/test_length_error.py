"""`sft_args.length_handling: error` (issue 15, D8): any example longer than max_seq_length is a data error before
training, listing the first 20 by file:line (row index for sources without lines)."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from finetuning.cli import main
from finetuning.data.readers import MAX_REPORTED_PROBLEMS, DataError
from tests.conftest import FACTS, sft_config, write_jsonl, write_yaml
from tests.data.test_columns_roles import data_conf, sft_examples

LIMIT = 30  # the facts' conversations are 25-48 tokens here: about half are longer
HEADLINE = (
    "sft_args.max_seq_length: {count} training examples are longer than 30 tokens and sft_args.length_handling is "
    "'error'; shorten them, raise the limit, or set length_handling: filter (drop them) or truncate"
)


def lengths(tokenizer, path, entry: dict | None = None) -> list[int]:
    """Each example's length, in file order, with no limit."""
    examples, _ = sft_examples(tokenizer, data_conf(path, entry))
    return [len(ids) for ids, _ in examples]


def test_the_first_twenty_too_long_examples_are_listed_by_file_and_line(tokenizer):
    full = lengths(tokenizer, FACTS)
    too_long = [(line, length) for line, length in enumerate(full, start=1) if length > LIMIT]
    assert len(too_long) > MAX_REPORTED_PROBLEMS  # the list is cut
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, data_conf(FACTS), max_seq_length=LIMIT, length_handling="error")
    assert error.value.problems == [
        HEADLINE.format(count=len(too_long)),
        *[f"{FACTS}:{line}: {length} tokens" for line, length in too_long[:MAX_REPORTED_PROBLEMS]],
        f"... and {len(too_long) - MAX_REPORTED_PROBLEMS} more",
    ]


def test_lines_stay_right_after_duplicates_and_blank_lines(tmp_path, tokenizer):
    rows = [json.loads(line) for line in FACTS.read_text(encoding="utf-8").splitlines()[:6]]
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [rows[0], rows[0], *rows[1:]]).replace("\n", "\n\n", 1))
    full = lengths(tokenizer, write_jsonl(tmp_path / "plain.jsonl", rows))
    lines = [1, *range(4, 4 + len(rows) - 1)]  # row 0 on line 1; its copy (line 3) is dropped; a blank line 2
    expected = [f"{path}:{line}: {length} tokens" for line, length in zip(lines, full, strict=True) if length > LIMIT]
    assert expected
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, data_conf(path, deduplicate=True), max_seq_length=LIMIT, length_handling="error")
    assert error.value.problems == [HEADLINE.format(count=len(expected)), *expected]


def test_sources_without_lines_name_the_row(tmp_path, tokenizer):
    rows = [json.loads(line) for line in FACTS.read_text(encoding="utf-8").splitlines()[:8]]
    Dataset.from_list(rows).to_parquet(str(tmp_path / "facts.parquet"))
    full = lengths(tokenizer, tmp_path / "facts.parquet")
    expected = [f"{tmp_path / 'facts.parquet'}: row {row}: {n} tokens" for row, n in enumerate(full) if n > LIMIT]
    with pytest.raises(DataError) as error:
        sft_examples(tokenizer, data_conf(tmp_path / "facts.parquet"), max_seq_length=LIMIT, length_handling="error")
    assert error.value.problems[1:] == expected


def test_nothing_too_long_trains_everything(tokenizer):
    full, _ = sft_examples(tokenizer, data_conf(FACTS))
    kept, report = sft_examples(
        tokenizer, data_conf(FACTS), max_seq_length=max(map(len, (i for i, _ in full))), length_handling="error"
    )
    assert kept == full and report.dropped_too_long == {} and report.truncated == {}


def test_validate_reports_it_before_any_training(tmp_path, tiny_model_dir, capsys):
    config = sft_config(tmp_path, tiny_model_dir, sft_args={"max_seq_length": LIMIT, "length_handling": "error"})
    assert main(["validate", str(write_yaml(tmp_path / "c.yaml", config))]) == 2
    err = capsys.readouterr().err
    assert "sft_args.length_handling is 'error'" in err and f"{FACTS}:" in err
