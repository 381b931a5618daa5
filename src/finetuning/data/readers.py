"""Read and validate data files row by row, so that bad data fails with `file:line: problem` before any model loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError

ROLES = ("system", "user", "assistant")
MAX_REPORTED_PROBLEMS = 20


class DataError(UserError):
    """User error in data files; carries every problem found (each `path:line: message`)."""


def resolve_data_path(path: str) -> Path:
    """Relative paths resolve against the working directory, as in the Silogen engine."""
    return Path(path).expanduser().resolve()


def check_messages(messages, field: str, require_assistant: bool = False) -> str | None:
    """Return a problem description for a malformed message list, or None."""
    if not isinstance(messages, list) or not messages:
        return f"'{field}' must be a non-empty list of {{role, content}} messages"
    for index, message in enumerate(messages):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            return f"{where} must be an object with 'role' and 'content'"
        unknown = set(message) - {"role", "content"}
        if unknown:
            return f"{where} has unknown keys {sorted(unknown)}; a message has only 'role' and 'content'"
        if message.get("role") not in ROLES:
            return f"{where}.role is {message.get('role')!r}; expected one of {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"{where}.content must be a string"
    if require_assistant and not any(m["role"] == "assistant" for m in messages):
        return f"'{field}' has no assistant message, so there is nothing to train on"
    return None


def sft_row_problem(row: dict, require_assistant: bool = False) -> str | None:
    if "messages" not in row:
        return f"missing 'messages' (keys found: {sorted(row)})"
    return check_messages(row["messages"], "messages", require_assistant)


def _iter_json_rows(path: Path):
    """Yield (line number, parsed value or exception) for a JSONL file, or for a JSON array file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        before = path.read_bytes()[: error.start]
        column = error.start - (before.rfind(b"\n") + 1) + 1
        yield before.count(b"\n") + 1, ValueError(f"not valid UTF-8 (byte {column} of the line)")
        return
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            yield error.lineno, ValueError(f"invalid JSON: {error.msg}")
            return
        for index, row in enumerate(rows):
            yield index + 1, row  # for a JSON array, "line" is the element number
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            yield number, ValueError(f"invalid JSON: {error.msg} (column {error.colno})")


def read_rows(path_str: str, row_problem: Callable[[dict], str | None]) -> list[dict]:
    """Read every row of one data file; raise DataError listing each bad row with its line number."""
    path = resolve_data_path(path_str)
    if not path.is_file():
        raise DataError([f"{path}: file not found"])
    rows, problems = [], []
    for line, value in _iter_json_rows(path):
        if isinstance(value, Exception):
            problems.append(f"{path}:{line}: {value}")
        elif not isinstance(value, dict):
            problems.append(f"{path}:{line}: each row must be a JSON object, got {type(value).__name__}")
        elif (problem := row_problem(value)) is not None:
            problems.append(f"{path}:{line}: {problem}")
        else:
            rows.append(value)
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            problems.append(f"{path}: stopped after {MAX_REPORTED_PROBLEMS} problems")
            break
    if not problems and not rows:
        problems.append(f"{path}: no rows (the file is empty)")
    if problems:
        raise DataError(problems)
    return rows


def read_all(paths: list[str], row_problem: Callable[[dict], str | None]) -> list[list[dict]]:
    """Read several files, collecting the problems of all of them before failing."""
    results, problems = [], []
    for path in paths:
        try:
            results.append(read_rows(path, row_problem))
        except DataError as error:
            problems.extend(error.problems)
    if problems:
        raise DataError(problems)
    return results
