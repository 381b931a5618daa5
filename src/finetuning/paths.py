"""The one rule for paths a user gives (config files, data, model, adapter, output, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_user_path(path: str | os.PathLike[str]) -> Path:
    """Relative paths resolve against the working directory, as in the Silogen engine (`~` expands); errors name
    the result, so the user sees which file was meant."""
    return Path(path).expanduser().resolve()


def read_json_object_file(value: str | os.PathLike[str], key: str, what: str) -> tuple[dict, list[str]]:
    """The JSON object in the file a config key names (`what` says what it holds, e.g. "a DeepSpeed config"), or
    the problems that stop it being read, each naming the key and the file (and the line of a JSON error)."""
    import json

    path = resolve_user_path(value)
    if not path.is_file():
        return {}, [f"{key}: {path}: " + ("is a directory, not a JSON file" if path.is_dir() else "file not found")]
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return {}, [f"{key}: {path}: not valid UTF-8 ({what} is a JSON file)"]
    except json.JSONDecodeError as error:
        return {}, [f"{key}: {path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})"]
    except OSError as error:
        return {}, [f"{key}: {path}: cannot be read ({error.strerror or error})"]
    if not isinstance(config, dict):
        return {}, [f"{key}: {path}: {what} is a JSON object, not {type(config).__name__}"]
    return config, []
