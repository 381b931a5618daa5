"""Outcomes of slow, deterministic checks, kept on disk so that an unchanged input is not checked again.

`finetuning validate` runs checks that need torch (building the TrainingArguments, matching target_modules on a
meta-device model, tokenizing the data) and reads the installed trainer arguments' fields; each takes seconds,
mostly importing torch. Their outcome depends only on their inputs and the installed libraries, so it is stored
under a digest of exactly those: `cached_outcome(kind, key_parts, compute)` returns the stored outcome when the
digest matches, else runs `compute()` and stores what it returns (any JSON value, e.g. a list of problems). An
exception from `compute` is not stored. The digest always includes the versions of the libraries the checks use and
a stamp of the engine's own source, so an upgrade or an edit re-checks.

Where: `$FINETUNING_CACHE`, else `~/.cache/finetuning`. Entries are written atomically (a temporary file renamed
into place); an unreadable or corrupt entry is computed again and replaced. Nothing is ever required from it:
deleting the directory only costs time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

LIBRARIES = ("finetuning", "transformers", "trl", "peft", "torch", "tokenizers", "datasets", "accelerate")


def cache_dir() -> Path:
    """`$FINETUNING_CACHE` (read now: tests set it), else `~/.cache/finetuning`."""
    return Path(os.environ.get("FINETUNING_CACHE") or Path.home() / ".cache" / "finetuning")


@functools.cache
def library_versions() -> dict[str, str]:
    """Installed versions from package metadata (nothing is imported)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@functools.cache
def engine_stamp() -> str:
    """Size and modification time of every source file of the engine: a development checkout changes its code
    without changing its version number, and a changed check must not answer with an old outcome."""
    package = Path(__file__).resolve().parent
    entries = sorted(
        f"{path.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}"
        for path in package.rglob("*.py")
        if (stat := path.stat())
    )
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def digest(*parts: Any) -> str:
    """A stable digest of JSON-able parts (dict order does not matter; other objects count by their text)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (a missing file digests as such, so creating it later re-checks)."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                hasher.update(block)
    except OSError as error:
        return f"unreadable: {type(error).__name__}"
    return hasher.hexdigest()


def entry_path(kind: str, key_parts: Any, engine_code: bool = True) -> Path:
    stamp = engine_stamp() if engine_code else None
    return cache_dir() / kind / f"{digest(key_parts, library_versions(), stamp)}.json"


def cached_outcome(kind: str, key_parts: Any, compute: Callable[[], Any], engine_code: bool = True) -> Any:
    """The stored outcome of check `kind` for these inputs, or `compute()`'s, stored for next time. `engine_code`:
    whether the outcome also depends on the engine's own code (a check does; a table read from a library does not,
    beyond the engine version and the caller's format number in `key_parts`)."""
    path = entry_path(kind, key_parts, engine_code)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["outcome"]
    except (OSError, ValueError, KeyError, TypeError):  # absent or corrupt: compute it again
        pass
    outcome = compute()
    _write_atomically(path, json.dumps({"kind": kind, "outcome": outcome}))
    return outcome


def _write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same directory, then rename: a reader sees the old entry or the whole new one. A
    read-only or full disk only loses the cache, never the command."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        pass
