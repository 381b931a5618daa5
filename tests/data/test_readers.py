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


def test_json_array_problems_name_the_line_the_element_starts_on(tmp_path):
    bad = {"messages": [{"role": "robot", "content": "x"}]}
    text = "[\n" + json.dumps(GOOD) + ",\n\n  " + json.dumps(bad) + "\n]\n"
    (problem,) = problems_for(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'data.jsonl'}:4: messages[0].role is 'robot'")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("[\n" + json.dumps(GOOD) + ",\n", 2, "the array is never closed"),
        ("[" + json.dumps(GOOD) + " " + json.dumps(GOOD) + "]", 1, "expected ',' or ']'"),
        ("[" + json.dumps(GOOD) + ",]", 1, "invalid JSON: Expecting value"),
        ("[" + json.dumps(GOOD) + "]\nmore\n", 2, "extra data after the closing ']'"),
        (json.dumps(GOOD, indent=2), 1, "one JSON object spread over several lines"),
    ],
)
def test_broken_json_files_name_the_line(tmp_path, text, line, reason):
    problems = problems_for(tmp_path, text)
    assert any(f"data.jsonl:{line}: " in p and reason in p for p in problems), problems


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert read_rows(str(path), sft_row_problem) == [GOOD]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"role": "assistant", "content": ""}, "messages[1].content is empty; assistant messages need text"),
        ({"role": "assistant", "content": None}, "messages[1].content must be a string, got null"),
        ({"role": "assitant", "content": "a"}, "messages[1].role is 'assitant'; did you mean 'assistant'?"),
        ({"role": "Assistant", "content": "a"}, "did you mean 'assistant'?"),
    ],
)
def test_message_problems_say_what_was_found(message, reason):
    assert reason in sft_row_problem({"messages": [{"role": "user", "content": "q"}, message]})


def test_empty_system_message_is_allowed():
    assert sft_row_problem({"messages": [{"role": "system", "content": ""}, *GOOD["messages"]]}) is None


def test_whole_file_problems_name_the_config_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(DataError) as error:
        read_all(["empty.jsonl", "."], sft_row_problem, ["x.datasets[0].path", "x.datasets[1].path"])
    assert error.value.problems == [
        f"x.datasets[0].path: {tmp_path / 'empty.jsonl'}: no rows: the file is empty (0 bytes)",
        f"x.datasets[1].path: {tmp_path}: is a directory; a dataset path names a JSONL file (or a .json, .parquet or "
        ".csv file, a Hub dataset id, or a directory written by datasets.save_to_disk: this one has no state.json "
        "or dataset_dict.json)",
    ]


def test_row_types_are_named_as_in_json(tmp_path):
    problems = problems_for(tmp_path, '"a"\n[1]\n3\nnull\n')
    assert [p.rsplit("got ", 1)[1] for p in problems] == ["string", "array", "number", "null"]
