"""Shared base for config sections.

Every section forbids unknown keys: a typo in a YAML config must fail loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError


class StrictModel(BaseModel):
    """Base for all config sections: unknown keys are errors, values are checked on construction."""

    model_config = ConfigDict(extra="forbid", validate_default=False)


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (Python's bool is an int; in a YAML config `true` is never a number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_a_bool(value: Any) -> Any:
    # pydantic reads true as 1; in a YAML config `total_train_batch_size: yes` is a mistake, not a size.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_for_number", "must be a number, got {value}", {"value": str(value).lower()})
    return value


# Numbers that refuse true/false (which pydantic would otherwise accept as 1 / 0).
Int = Annotated[int, BeforeValidator(_not_a_bool)]
Float = Annotated[float, BeforeValidator(_not_a_bool)]


def _single_path_component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"must be a plain directory name inside output_dir (no '/' or '..'), got {name!r}")
    return name


# A name of a directory created inside training_args.output_dir: outputs never land outside it.
DirectoryName = Annotated[str, AfterValidator(_single_path_component)]
