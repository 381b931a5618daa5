"""Shared base for config sections.

Every section forbids unknown keys: a typo in a YAML config must fail loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for all config sections: unknown keys are errors, values are checked on construction."""

    model_config = ConfigDict(extra="forbid", validate_default=False)


def _single_path_component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"must be a plain directory name inside output_dir (no '/' or '..'), got {name!r}")
    return name


# A name of a directory created inside training_args.output_dir: outputs never land outside it.
DirectoryName = Annotated[str, AfterValidator(_single_path_component)]
