"""Tokenized once: the finished datasets of a data pipeline, kept on disk (Arrow, memory-mapped) under a key of
everything that changes them, so a second run of the same config tokenizes nothing.

The key (`entry_key`): the data fingerprint (bytes of every data file, the data section: template, sources, mixing
and split seeds, the method's length and mask settings, PIPELINE_VERSION; data/inputs.py), the tokenizer as it will
tokenize (its serialised vocabulary and rules, special tokens, chat template, and the bytes of its local files), the
versions of the engine and the libraries that tokenize, and the source of the data package (a development checkout
changes code without changing its version). Change any of them and the entry is another one: a miss.

An entry is `<root>/<method>-<key>/`: `train/`, `validation/` (Dataset.save_to_disk), `report.json` (the
DataReport) and `complete.json`, the marker, written last. It is built in a temporary directory beside and renamed
into place, so a reader sees a whole entry or none; one without the marker, or that fails to load, is rebuilt.
`<root>` is `data_conf.prepared_path`, else `$FINETUNING_CACHE/data`, else `~/.cache/finetuning/data`.

Several processes (torchrun): the first process of each machine (LOCAL_RANK 0) builds, the others wait for its
marker and read the entry. The process group is usually not initialised at data time, so waiting is polling the
file system; a builder's data error is written beside the entry, so the waiters fail with it instead of timing out.
Two builders of the same key (two machines on a shared disk) are harmless: the second rename finds a whole entry and
discards its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..checks_cache import cache_dir, library_versions
from ..errors import UserError
from ..paths import resolve_user_path
from .inputs import DataReport, data_fingerprint
from .readers import forget_read_files

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # raised when the entry layout or its key changes meaning
MARKER = "complete.json"
WAIT_SECONDS = 4 * 3600  # how long a non-building process waits for the builder (a large corpus takes a while)
POLL_SECONDS = 0.5
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")

Built = tuple["Dataset", "Dataset | None", DataReport]


def cache_root(data_conf) -> Path:
    """`data_conf.prepared_path`, else `$FINETUNING_CACHE/data` (read now: tests set it), else the user cache."""
    prepared = getattr(data_conf, "prepared_path", None)
    return resolve_user_path(prepared) if prepared else cache_dir() / "data"


@functools.cache
def data_code_stamp() -> str:
    """Digest of the data package's source: the code that reads, formats, tokenizes and masks."""
    package = Path(__file__).resolve().parent
    hasher = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        hasher.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()


def _local_files(name_or_path: str) -> dict[str, str]:
    """sha256 of each non-weight file of a local tokenizer directory (none for a hub id)."""
    folder = Path(name_or_path) if name_or_path else None
    if folder is None or not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_WEIGHT_SUFFIXES))
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def tokenizer_digest(tokenizer) -> str:
    """What decides the ids a tokenizer produces, as set up for this run (template installed, pad token chosen,
    tokens added): its serialised rules and vocabulary (a fast tokenizer's `to_str`, else the vocabulary), special and
    added tokens, chat template, and the bytes of the files it was loaded from when they are local."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    described = {
        "class": type(tokenizer).__name__,
        "rules": hashlib.sha256(rules.encode()).hexdigest(),
        "special": tokenizer.special_tokens_map,
        "added": {str(index): str(token) for index, token in tokenizer.added_tokens_decoder.items()},
        "chat_template": tokenizer.chat_template,
        "files": _local_files(getattr(tokenizer, "name_or_path", "")),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def entry_key(method: str, data_conf, settings: dict, tokenizer) -> str:
    """The cache key of a method's datasets (see the module docstring)."""
    described = {
        "format": CACHE_FORMAT,
        "method": method,
        "data": data_fingerprint(data_conf, settings),
        "tokenizer": tokenizer_digest(tokenizer),
        "versions": library_versions(),
        "code": data_code_stamp(),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_datasets(method: str, data_conf, settings: dict, tokenizer, build: Callable[[], Built]) -> Built:
    """The datasets `build()` returns, from the cache when an entry of the same key is there (one log line says so),
    else built (by one process per machine), stored and read back, so first and later runs train on the same
    memory-mapped data."""
    entry = cache_root(data_conf) / f"{method}-{entry_key(method, data_conf, settings, tokenizer)}"
    loaded = _load(entry)
    if loaded is not None:
        logger.info("data: cached tokenized data reused from %s", entry)
        forget_read_files()  # the checks' parsed rows: not needed with the tokenized data at hand (data/inputs.py)
        return loaded
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return _wait_for(entry)
    return _build_and_store(entry, build)


def cache_location(dataset: Dataset) -> Path | None:
    """The cache entry a dataset returned by `cached_datasets` was read from."""
    files = dataset.cache_files
    return Path(files[0]["filename"]).parent.parent if files else None


def _load(entry: Path) -> Built | None:
    """The entry's datasets and report; None when absent, half-written or corrupt (then it is rebuilt)."""
    if not (entry / MARKER).is_file():
        return None
    from datasets import load_from_disk

    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
        train = load_from_disk(str(entry / "train"))
        evaluation = load_from_disk(str(entry / "validation")) if marker["validation_rows"] is not None else None
        counts = [len(train), None if evaluation is None else len(evaluation)]
        if counts != [marker["train_rows"], marker["validation_rows"]]:
            raise ValueError(f"row counts {counts} differ from the marker's")
        fields = {field.name for field in dataclasses.fields(DataReport)}
        report = json.loads((entry / "report.json").read_text(encoding="utf-8"))
        return train, evaluation, DataReport(**{key: value for key, value in report.items() if key in fields})
    except Exception as error:  # noqa: BLE001 - any unreadable entry is rebuilt, never trusted
        logger.warning("data: cache entry %s cannot be read (%s): tokenizing again", entry, error)
        return None


def _failure_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".failed.json")


def _build_and_store(entry: Path, build: Callable[[], Built]) -> Built:
    failure = _failure_path(entry)
    failure.unlink(missing_ok=True)
    try:
        train, evaluation, report = build()
    except UserError as error:  # the waiting processes fail with the same problems
        _write_failure(failure, error)
        raise
    try:
        _store(entry, train, evaluation, report)
    except OSError as error:  # a read-only or full disk costs the cache, never the run
        logger.warning("data: tokenized data could not be cached in %s (%s)", entry, error)
        return train, evaluation, report
    logger.info("data: tokenized data cached in %s", entry)
    stored = _load(entry)
    return stored if stored is not None else (train, evaluation, report)


def _store(entry: Path, train: Dataset, evaluation: Dataset | None, report: DataReport) -> None:
    """Build the entry in a temporary directory beside it, marker last, then rename it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".tmp-{entry.name}-"))
    try:
        train.save_to_disk(str(temporary / "train"))
        if evaluation is not None:
            evaluation.save_to_disk(str(temporary / "validation"))
        (temporary / "report.json").write_text(json.dumps(dataclasses.asdict(report)), encoding="utf-8")
        marker = {"train_rows": len(train), "validation_rows": None if evaluation is None else len(evaluation)}
        (temporary / MARKER).write_text(json.dumps(marker), encoding="utf-8")
        _move_into_place(temporary, entry)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _move_into_place(temporary: Path, entry: Path) -> None:
    """Rename; an entry already there is kept when whole (another builder of the same key won), else replaced."""
    if entry.exists():
        if (entry / MARKER).is_file() and _load(entry) is not None:
            return
        shutil.rmtree(entry, ignore_errors=True)
    try:
        os.rename(temporary, entry)
    except OSError:
        if not (entry / MARKER).is_file():  # not a concurrent builder's whole entry: a real failure
            raise


def _write_failure(failure: Path, error: UserError) -> None:
    cls = type(error)
    record = {"problems": error.problems, "error": f"{cls.__module__}:{cls.__qualname__}"}
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=failure.parent, prefix=".tmp-failed-")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(temporary, failure)
    except OSError:
        pass


def _wait_for(entry: Path, timeout: float = WAIT_SECONDS) -> Built:
    """A non-building process: poll until the builder's entry is whole (or its data error is written)."""
    logger.info("data: waiting for the first process on this machine to tokenize into %s", entry)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (entry / MARKER).is_file() and (loaded := _load(entry)) is not None:
            return loaded
        if (failure := _failure_path(entry)).is_file():
            record = json.loads(failure.read_text(encoding="utf-8"))
            module, _, name = record["error"].partition(":")
            raise getattr(importlib.import_module(module), name, UserError)(record["problems"])
        time.sleep(POLL_SECONDS)
    raise UserError(f"data: the first process did not finish tokenizing into {entry} within {timeout:.0f} s")
