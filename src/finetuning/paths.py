"""The one rule for paths a user gives (config files, data, model, adapter, output, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_user_path(path: str | os.PathLike[str]) -> Path:
    """Relative paths resolve against the working directory, as in the Silogen engine (`~` expands); errors name
    the result, so the user sees which file was meant."""
    return Path(path).expanduser().resolve()
