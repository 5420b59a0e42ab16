"""The base pydantic model for every config section: unknown fields are errors, values are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """A strict config section: `extra="forbid"`, validated on assignment, finite numbers, documented fields."""

    # `.inf`/`.nan` in a config is never meant: it only turns into a crash while sampling or waiting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)
