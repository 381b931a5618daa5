"""Shared base for config sections.

Every section forbids unknown keys: a typo in a YAML config must fail loudly instead of being ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for all config sections: unknown keys are errors, values are checked on construction."""

    model_config = ConfigDict(extra="forbid", validate_default=False)
