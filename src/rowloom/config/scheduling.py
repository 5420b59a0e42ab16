"""`SchedulingMetadata`: what a column's tasks wait on, how much share they get, what they cost.

Validated here so that a bad value is a config error, not a scheduler surprise.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from rowloom.config.base import ConfigModel


class ResourceClass(StrEnum):
    """The local resource a task holds while it runs."""

    LLM_WAIT = "llm_wait"  # waiting on a model endpoint
    CPU = "cpu"  # local computation
    IO = "io"  # local or remote I/O that is not a model call


class SchedulingMetadata(ConfigModel):
    """How the task scheduler treats one column's tasks."""

    resource_class: ResourceClass = Field(description="Resource the tasks hold: llm_wait, cpu or io.")
    weight: float = Field(1.0, gt=0, le=1000, description="Share of its resource relative to other columns.")
    cost: float = Field(1.0, gt=0, le=1e6, description="Relative cost of one task (units of its resource).")
