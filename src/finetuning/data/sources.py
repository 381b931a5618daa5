"""Where a dataset entry's rows come from: a local file, a `datasets.save_to_disk` directory, or a Hub dataset id.

JSON Lines and JSON array files are parsed by data/readers.py itself, so that every row problem names `file:line`.
Parquet and CSV files, saved directories and Hub datasets are loaded through `datasets` (load_dataset /
load_from_disk); their rows have no lines, so problems name the row index (`file: row 12: ...`, counted from 0 as in
`dataset[12]`). Each source also gets a digest for the data fingerprint: the bytes of the file (or of every file of
the saved directory), or, for a Hub dataset, its id, configuration, split, data files and revision.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..paths import resolve_user_path

LINE_FILES = (".jsonl", ".json")  # parsed by readers.py, with line numbers
TABLE_FILES = {".parquet": "parquet", ".csv": "csv"}  # loaded by `datasets`, with row indexes
# `org/name` or `name`: what a Hub dataset id looks like (a path that exists here always wins).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Source:
    """The keys of a dataset entry that decide which rows it reads (config/data.py DatasetSource)."""

    path: str
    name: str | None = None
    split: str | None = None
    data_files: str | list[str] | None = None
    revision: str | None = None

    def hub_key(self) -> tuple:
        """What names a Hub dataset's rows, hashable (the memo key and, as JSON, its digest)."""
        files = tuple(self.data_files) if isinstance(self.data_files, list) else self.data_files
        return ("hub", self.path, self.name, self.split, files, self.revision)


def as_source(entry) -> Source:
    """A config dataset entry (or a bare path string, as older callers pass) as a Source."""
    if isinstance(entry, str):
        return Source(entry)
    keys = ("name", "split", "data_files", "revision")
    return Source(entry.path, **{key: getattr(entry, key, None) for key in keys})


def row_format(entry) -> str:
    """The entry's row format (`messages` for a bare path)."""
    return getattr(entry, "format", "messages")


@dataclass(frozen=True)
class Loaded:
    """Rows loaded through `datasets` (a memory-mapped dataset, walked row by row), or the problem that stopped
    the loading."""

    digest: str | None
    dataset: object = None
    problem: str | None = None


def kind(source: Source) -> str:
    """lines, table, saved, directory (not a saved dataset), hub, or missing."""
    path = resolve_user_path(source.path)
    if path.is_dir():
        return "saved" if _is_saved_dataset(path) else "directory"
    if path.is_file():
        return "table" if path.suffix.lower() in TABLE_FILES else "lines"
    written_as_path = source.path.startswith(("/", ".", "~")) or "\\" in source.path
    suffix = Path(source.path).suffix.lower()
    if written_as_path or suffix in LINE_FILES or suffix in TABLE_FILES or not _HUB_ID.match(source.path):
        return "missing"
    return "hub"


def _is_saved_dataset(path: Path) -> bool:
    """A directory `Dataset.save_to_disk` (state.json) or `DatasetDict.save_to_disk` (dataset_dict.json) wrote."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it; read at each call, since a run may set it after import."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _OFFLINE_VALUES


def memo_key(source: Source, source_kind: str) -> tuple | None:
    """What must be unchanged for a loaded source to be reused within a run; None: do not memoise."""
    if source_kind == "hub":
        return source.hub_key()
    path = resolve_user_path(source.path)
    files = _saved_files(path) if source_kind == "saved" else [path]
    try:
        stats = [(str(file), file.stat()) for file in files]
    except OSError:
        return None
    identity = tuple((name, s.st_size, s.st_mtime_ns, s.st_ino, s.st_ctime_ns) for name, s in stats)
    return (source_kind, source.split, identity)


def _saved_files(path: Path) -> list[Path]:
    return sorted(file for file in path.rglob("*") if file.is_file())


def load(source: Source, source_kind: str) -> Loaded:
    """Rows of a table file, saved directory or Hub dataset, through `datasets`; a failure is the problem."""
    if source_kind == "hub":
        return _load_hub(source)
    path = resolve_user_path(source.path)
    try:
        digest = _saved_digest(path) if source_kind == "saved" else hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        return Loaded(None, problem=f"{path}: cannot read: {error.strerror or error}")
    try:
        dataset = _load_saved(path, source.split) if source_kind == "saved" else _load_table(path)
    except Exception as error:  # noqa: BLE001 - any failure of the reader is a problem with the user's file
        return Loaded(digest, problem=f"{path}: cannot load it with `datasets`: {_first_line(error)}")
    if isinstance(dataset, str):
        return Loaded(digest, problem=f"{path}: {dataset}")
    return _rows(dataset, digest, path)


def _rows(dataset, digest: str, where) -> Loaded:
    if len(dataset) == 0:
        return Loaded(digest, problem=f"{where}: no rows: the dataset is empty")
    return Loaded(digest, dataset)


def _load_table(path: Path):
    from datasets import load_dataset

    return load_dataset(TABLE_FILES[path.suffix.lower()], data_files=str(path), split="train")


def _load_saved(path: Path, split: str | None):
    """A saved Dataset, or the `split` (default train) of a saved DatasetDict; a str is the problem."""
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if not isinstance(loaded, DatasetDict):
        return loaded
    wanted = split or "train"
    if wanted not in loaded:
        return f"the saved dataset has no split {wanted!r} (splits: {', '.join(loaded)}); set `split`"
    return loaded[wanted]


def _saved_digest(path: Path) -> str:
    """sha256 over every file of a saved dataset directory: its relative name and its bytes."""
    digest = hashlib.sha256()
    for file in _saved_files(path):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _load_hub(source: Source) -> Loaded:
    digest = hashlib.sha256(json.dumps(source.hub_key()).encode()).hexdigest()
    if hub_offline():
        return Loaded(
            digest,
            problem=(
                f"{source.path!r} is not a local file or directory, and HF_HUB_OFFLINE is set: the Hugging Face Hub "
                "dataset of that id cannot be downloaded; give a local path, or unset HF_HUB_OFFLINE"
            ),
        )
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            source.path,
            name=source.name,
            split=source.split or "train",
            data_files=source.data_files,
            revision=source.revision,
        )
    except Exception as error:  # noqa: BLE001 - the Hub's and the builder's errors are the user's to read
        return Loaded(
            digest,
            problem=f"{source.path!r} is not a local file or directory, and loading it from the Hugging Face Hub "
            f"failed: {_first_line(error)}",
        )
    return _rows(dataset, digest, repr(source.path))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
