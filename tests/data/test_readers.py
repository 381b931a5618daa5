"""Bad data fails with file:line and a readable reason; good data in JSONL or JSON-array form reads."""

from __future__ import annotations

import json

import pytest

from finetuning.data.readers import DataError, read_all, read_rows, sft_row_problem
from tests.conftest import write_jsonl

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def problems_for(tmp_path, text: str | bytes, require_assistant=False) -> list[str]:
    path = tmp_path / "data.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError) as error:
        read_rows(str(path), lambda row: sft_row_problem(row, require_assistant))
    return error.value.problems


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (json.dumps(GOOD) + "\n{not json\n", 2, "invalid JSON"),
        (json.dumps(GOOD) + "\n" + json.dumps({"msgs": []}) + "\n", 2, "missing 'messages'"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n", 1, "role is 'robot'"),
        (json.dumps({"messages": []}) + "\n", 1, "non-empty list"),
        (json.dumps({"messages": [{"role": "user", "content": 3}]}) + "\n", 1, "content must be a string"),
        ("[1, 2]\n", 1, "must be a JSON object"),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(tmp_path, content, line, reason):
    problems = problems_for(tmp_path, content)
    assert any(f"data.jsonl:{line}:" in p and reason in p for p in problems), problems


def test_non_utf8_and_empty_files(tmp_path):
    assert "not valid UTF-8" in problems_for(tmp_path, json.dumps(GOOD).encode() + b"\n\xff\xfe\n")[0]
    assert "no rows" in problems_for(tmp_path, b"")[0]


def test_no_assistant_turn_is_an_error_under_completions_only(tmp_path):
    row = {"messages": [{"role": "user", "content": "q"}]}
    problems = problems_for(tmp_path, json.dumps(row) + "\n", require_assistant=True)
    assert "data.jsonl:1:" in problems[0] and "no assistant message" in problems[0]


def test_missing_file_names_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        read_all(["missing.jsonl"], sft_row_problem)
    assert error.value.problems == [f"{tmp_path / 'missing.jsonl'}: file not found"]


def test_json_array_and_jsonl_read_the_same(tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", [GOOD, GOOD])
    array = tmp_path / "a.json"
    array.write_text(json.dumps([GOOD, GOOD]))
    assert read_rows(str(jsonl), sft_row_problem) == read_rows(str(array), sft_row_problem) == [GOOD, GOOD]


def test_every_file_is_checked_before_failing(tmp_path):
    bad1 = write_jsonl(tmp_path / "one.jsonl", [{"x": 1}])
    bad2 = write_jsonl(tmp_path / "two.jsonl", [{"x": 1}])
    with pytest.raises(DataError) as error:
        read_all([str(bad1), str(bad2)], sft_row_problem)
    assert len(error.value.problems) == 2
