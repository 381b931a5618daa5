"""Read and validate data files row by row, so that bad data fails with `file:line: problem` before any model loads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, did_you_mean_or_choices
from ..paths import resolve_user_path
from . import sources
from .formats import Conversion, conversion_of, json_type
from .message_fields import ROLES_WITH_TEXT

ROLES = ("system", "user", "assistant")
MAX_REPORTED_PROBLEMS = 20
SYSTEM_MESSAGE_ADDED = " (with data_conf.default_system_message put first)"


class DataError(UserError):
    """User error in data files; carries every problem found (each `path:line: message`)."""


def message_problem(message, where: str) -> str | None:
    """A problem with one {role, content} message, or None."""
    if not isinstance(message, dict):
        return f"{where} must be an object with 'role' and 'content'"
    unknown = set(message) - {"role", "content"}
    if unknown:
        return f"{where} has unknown keys {sorted(unknown)}; a message has only 'role' and 'content'"
    role = message.get("role")
    if role not in ROLES:
        return f"{where}.role is {role!r}{did_you_mean_or_choices(role, ROLES)}"
    if not isinstance(message.get("content"), str):
        return f"{where}.content must be a string, got {json_type(message.get('content'))}"
    if role in ROLES_WITH_TEXT and not message["content"].strip():
        return f"{where}.content is empty; {role} messages need text"
    return None


def check_messages(messages, field: str, require_assistant: bool = False) -> str | None:
    """Return a problem description for a malformed message list, or None."""
    if not isinstance(messages, list) or not messages:
        return f"'{field}' must be a non-empty list of {{role, content}} messages"
    for index, message in enumerate(messages):
        if problem := message_problem(message, f"{field}[{index}]"):
            return problem
    if require_assistant and not any(m["role"] == "assistant" for m in messages):
        return f"'{field}' has no assistant message, so there is nothing to train on"
    return None


def sft_row_problem(row: dict, require_assistant: bool = False) -> str | None:
    if "messages" not in row:
        return f"missing 'messages' (keys found: {sorted(row)})"
    return check_messages(row["messages"], "messages", require_assistant)


class _Lines:
    """Line numbers of increasing positions in a text, counted incrementally (a large array stays linear)."""

    def __init__(self, text: str):
        self.text, self.position, self.line = text, 0, 1

    def at(self, position: int) -> int:
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _iter_json_array(text: str) -> Iterator[tuple[int, object]]:
    """Elements of a JSON array file, each with the line it starts on, so problems point at the right line."""
    decoder, lines = json.JSONDecoder(), _Lines(text)
    position = _skip_space(text, text.index("[") + 1)
    if text.startswith("]", position):
        return
    while True:
        if position >= len(text):
            yield lines.at(len(text.rstrip())), ValueError("invalid JSON: the array is never closed with ']'")
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            yield error.lineno, ValueError(f"invalid JSON: {error.msg} (column {error.colno})")
            return
        yield lines.at(position), value
        position = _skip_space(text, end)
        if text.startswith(",", position):
            position = _skip_space(text, position + 1)
        elif text.startswith("]", position):
            extra = _skip_space(text, position + 1)
            if extra < len(text):
                yield lines.at(extra), ValueError("invalid JSON: extra data after the closing ']' of the array")
            return
        elif position < len(text):
            yield lines.at(position), ValueError("invalid JSON: expected ',' or ']' after an array element")
            return


def _iter_json_lines(text: str) -> Iterator[tuple[int, object]]:
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            if first and _is_one_json_object(text):
                yield (
                    number,
                    ValueError(
                        "the file is one JSON object spread over several lines; write one object per line (JSONL), "
                        "or a JSON array of objects"
                    ),
                )
                return
            yield number, ValueError(f"invalid JSON: {error.msg} (column {error.colno})")
        first = False


def _is_one_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _decode(data: bytes) -> tuple[str, tuple[tuple[int, object], ...]]:
    """UTF-8 text; a leading byte order mark (as Windows editors write it) is dropped. A bad byte is the file's one
    entry, naming its line, so the row checks report it as `path:line: not valid UTF-8 ...`."""
    try:
        return data.decode("utf-8-sig"), ()
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line, column = before.count(b"\n") + 1, error.start - (before.rfind(b"\n") + 1) + 1
        return "", ((line, ValueError(f"not valid UTF-8 (byte {column} of the line)")),)


def _iter_json_rows(text: str) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed value or exception) for a JSONL file, or for a JSON array file."""
    if text.lstrip().startswith("["):
        yield from _iter_json_array(text)
    else:
        yield from _iter_json_lines(text)


def _file_problem(path: Path, source_kind: str) -> str | None:
    if source_kind == "directory":
        return (
            f"{path}: is a directory; a dataset path names a JSONL file (or a .json, .parquet or .csv file, a Hub "
            "dataset id, or a directory written by datasets.save_to_disk: this one has no state.json or "
            "dataset_dict.json)"
        )
    if source_kind == "missing":
        return f"{path}: file not found"
    return None


# --- one read of each file per run ----------------------------------------------------------------------------------


@dataclass
class FileRead:
    """A data file as read once per run: what the data fingerprint needs (the digest of its bytes) and what the
    checks and the recipe walk (its rows, each with the line it starts on), from one open. The rows are parsed
    afresh on each walk and never kept: a file's rows as Python objects take ~10x its size, its text 1x, and a
    loaded source stays a memory-mapped dataset. None of it is walked when the checks' outcome and the tokenized
    data are both cached for these bytes."""

    digest: str | None  # sha256 of the file's bytes; None when they could not be read
    problem: str | None = None  # why the file cannot be used at all (missing, unreadable, empty)
    array: bool = False  # a JSON array file, not JSONL (for the "no rows" message)
    line_based: bool = True  # entries are numbered by line (JSON files), else by row index (data/sources.py)
    text: str | None = None  # a JSON file's decoded text
    bad_bytes: tuple[tuple[int, object], ...] = ()  # the one entry of a file that is not UTF-8
    dataset: object = None  # a source loaded through `datasets` (data/sources.py)

    def entries(self) -> Iterator[tuple[int, object]]:
        """(line or row index, value or the ValueError of a bad line), one at a time."""
        if self.bad_bytes:
            return iter(self.bad_bytes)
        if self.dataset is not None:
            return enumerate(self.dataset)
        return _iter_json_rows(self.text or "")


# Per-run memo: (absolute path, size, mtime_ns, inode, ctime_ns) → FileRead. A file changed on disk has another key,
# so it is read again; forget_read_files() empties the memo when a run ends (no text is kept past it).
_READ_FILES: dict[tuple, FileRead] = {}


def forget_read_files() -> None:
    """Drop the files read so far: the run lifecycle calls it when a run ends, so no rows outlive the run."""
    _READ_FILES.clear()


def _identity(path: Path) -> tuple | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (str(path), status.st_size, status.st_mtime_ns, status.st_ino, status.st_ctime_ns)


def _read_once(path: Path) -> FileRead:
    try:
        data = path.read_bytes()
    except OSError as error:
        return FileRead(None, problem=f"{path}: cannot read the file: {error.strerror or error}")
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return FileRead(digest, problem=f"{path}: no rows: the file is empty (0 bytes)")
    text, bad_bytes = _decode(data)
    del data  # the text from here on: one copy of the file, not two
    return FileRead(digest, array=text.lstrip().startswith("["), text=text, bad_bytes=bad_bytes)


def read_file(entry) -> FileRead:
    """The rows a dataset entry (or a bare path) names, read and parsed at most once while unchanged on disk: the
    fingerprint, the pre-load checks and the recipe all take it from here. JSON files are parsed here (with line
    numbers); parquet/csv files, saved datasets and Hub ids are loaded through `datasets` (data/sources.py)."""
    source = sources.as_source(entry)
    source_kind = sources.kind(source)
    path = resolve_user_path(source.path)
    if (problem := _file_problem(path, source_kind)) is not None:
        return FileRead(None, problem=problem)
    key = _identity(path) if source_kind == "lines" else sources.memo_key(source, source_kind)
    if key is not None and key in _READ_FILES:
        return _READ_FILES[key]
    read = _read_once(path) if source_kind == "lines" else _loaded(sources.load(source, source_kind))
    if key is not None and read.digest is not None:
        _READ_FILES[key] = read
    return read


def _loaded(loaded: sources.Loaded) -> FileRead:
    return FileRead(loaded.digest, problem=loaded.problem, line_based=False, dataset=loaded.dataset)


def file_digest(entry) -> str | None:
    """sha256 of the entry's bytes (from its one read; see data/sources.py for other sources), or None when it
    cannot be read."""
    return read_file(entry).digest


def row_label(entry) -> str:
    """How row problems name the source: the resolved path, or a Hub id as written."""
    source = sources.as_source(entry)
    return source.path if sources.kind(source) == "hub" else str(resolve_user_path(source.path))


# --- rows and their problems ----------------------------------------------------------------------------------------


def scan_rows(
    entry,
    row_problem: Callable[[dict], str | None],
    key: str | None = None,
    keep: Callable[[dict, int], None] | None = None,
    system_message: str | None = None,
) -> list[str]:
    """Walk one dataset entry's rows once: every problem found is returned, every good row (converted by the entry's
    format, with `system_message` first in its conversation when it has none; see data/formats.py) handed to
    `keep` with its line (row index for sources without lines) as it is read, so that the caller decides what to
    hold. A problem with the whole file names the config key when the caller knows it
    (`data_conf.training_data.datasets[0].path`); every bad row is `path:line: problem` (`path: row N: problem`
    for sources without lines)."""
    read, path = read_file(entry), row_label(entry)
    conversion = conversion_of(entry, system_message)
    if read.problem is not None:
        return [f"{key}: {read.problem}" if key else read.problem]
    problems, good = [], 0
    for line, value in read.entries():
        where = f"{path}:{line}" if read.line_based else f"{path}: row {line}"
        if isinstance(value, Exception):
            problems.append(f"{where}: {value}")
        elif not isinstance(value, dict):
            problems.append(f"{where}: each row must be a JSON object, got {json_type(value)}")
        elif isinstance(checked := _checked(value, conversion, row_problem), str):
            problems.append(f"{where}: {checked}")
        else:
            good += 1
            if keep is not None:
                keep(checked, line)
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            problems.append(f"{path}: stopped after {MAX_REPORTED_PROBLEMS} problems")
            break
    if not problems and not good:
        what = "an empty JSON array" if read.array else "only blank lines"
        problems.append(f"{path}: no rows: the file holds {what}")
    return problems


def _checked(row: dict, conversion: Conversion, row_problem: Callable[[dict], str | None]) -> dict | str:
    """The converted row, or its problem: the format's own (in the row's field names), then (chat-like rows) the
    conversation's as the method checks it. A default system message is put first only into a good conversation,
    and checked again there (a template may refuse system messages), so that any other problem keeps the indices of
    the row as written."""
    if (problem := conversion.problem(row)) is not None:
        return problem
    converted = conversion.convert(row)
    if conversion.plain_text(row):
        return converted
    if (problem := row_problem(converted)) is not None:
        return conversion.in_user_terms(problem, row)
    with_system = conversion.with_system_message(converted)
    if with_system is not converted and (problem := row_problem(with_system)) is not None:
        return conversion.in_user_terms(problem, row) + SYSTEM_MESSAGE_ADDED
    return with_system


def read_checked(
    entry, row_problem: Callable[[dict], str | None], key: str | None = None
) -> tuple[list[dict], list[str]]:
    """Every good row of one dataset entry (or bare path) and every problem found in it, rows in the `messages`
    format (or `{"text"}` rows for the text format), as a list: for small files (evaluation prompts); the data
    pipeline walks its files with `scan_rows`, which keeps no list."""
    rows: list[dict] = []
    return rows, scan_rows(entry, row_problem, key, lambda row, _: rows.append(row))


def data_problems(
    paths: list,
    row_problem: Callable[[dict], str | None],
    keys: list[str] | None = None,
    check: tuple | None = None,
    system_message: str | None = None,
) -> list[str]:
    """The problems of several data files, all of them (the check `finetuning validate` and the pre-flight run);
    `keys` are the config keys that name the files, for problems with a whole file. `check` names what `row_problem`
    checks (e.g. the template and mask mode): then the outcome is kept on disk for these exact file bytes and their
    conversion (checks_cache.py), so an unchanged file is not parsed again by the next run's checks."""
    keys = keys or [None] * len(paths)

    def problems() -> list[str]:
        return [
            found
            for path, key in zip(paths, keys, strict=True)
            for found in scan_rows(path, row_problem, key, system_message=system_message)
        ]

    reads = [read_file(path) for path in paths]
    if check is None or any(read.digest is None or read.problem is not None for read in reads):
        return problems()
    from ..checks_cache import cached_outcome

    files = [
        (read.digest, row_label(path), conversion_of(path, system_message).describe())
        for read, path in zip(reads, paths, strict=True)
    ]
    return cached_outcome("data-rows", [list(check), files, keys], problems)


def read_rows(path_str: str, row_problem: Callable[[dict], str | None], key: str | None = None) -> list[dict]:
    """Every row of one data file; raise DataError listing each bad row with its line number."""
    return read_all([path_str], row_problem, [key] if key else None)[0]


def read_all(paths: list, row_problem: Callable[[dict], str | None], keys: list[str] | None = None) -> list[list[dict]]:
    """The rows of several files (for the recipe); one DataError with the problems of all of them, if any."""
    keys = keys or [None] * len(paths)
    results = [read_checked(path, row_problem, key) for path, key in zip(paths, keys, strict=True)]
    problems = [problem for _, found in results for problem in found]
    if problems:
        raise DataError(problems)
    return [rows for rows, _ in results]
