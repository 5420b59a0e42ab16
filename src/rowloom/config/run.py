"""`RunConfig`: how a run is shaped — row groups, seed, error thresholds, frontier and memory bounds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.cache import CacheConfig
from rowloom.config.pricing import BudgetConfig
from rowloom.config.request_admission import RequestAdmissionConfig, reject_legacy_throttle


class RunConfig(ConfigModel):
    """Knobs of one generation run. Every field has a default that suits a typical hosted endpoint."""

    row_group_size: int = Field(100, ge=1, le=1_000_000, description="Rows per row group (one Parquet file).")
    seed: int | None = Field(
        None, description="Seed for samplers; unset = random, recorded in the manifest so resume is exact."
    )
    max_error_rate: float = Field(
        0.5, gt=0, le=1, description="Stop the run when more than this share of the rows in the window was dropped."
    )
    error_window: int = Field(200, ge=10, description="Number of most recent finished rows the rate looks at.")
    max_row_groups_in_flight: int = Field(
        16, ge=1, le=10_000, description="Hard cap on row groups admitted at once (the frontier never exceeds it)."
    )
    initial_row_groups_in_flight: int = Field(
        2, ge=1, description="Frontier width at the start; it widens while model capacity sits idle."
    )
    max_admitted_rows: int = Field(
        20_000, ge=1, description="Memory bound: the frontier narrows when admitted rows exceed it."
    )
    cpu_slots: int | None = Field(None, ge=1, description="Concurrent CPU tasks; default = number of cores.")
    task_policy: Literal["strict_fair", "bounded_borrow"] = Field(
        "bounded_borrow",
        description=(
            "How columns sharing a resource pool divide it while several have work waiting: strict_fair keeps each "
            "within its weighted share; bounded_borrow lets a column borrow idle share up to a bound, repaid first."
        ),
    )
    budget: BudgetConfig | None = Field(
        None,
        description=(
            "Most this run (with the runs it resumes) may spend: max_cost (needs every model's pricing), "
            "max_tokens, max_requests. Changing it never blocks a resume."
        ),
    )
    cache: CacheConfig = Field(
        default_factory=CacheConfig,
        description="The reply cache across runs: mode (readwrite, read, write, off), path, namespace, size bound.",
    )
    request_admission: RequestAdmissionConfig = Field(
        default_factory=RequestAdmissionConfig,
        description="How request admission finds and holds each endpoint's capacity (limits, cooldowns, retries).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_throttle(cls, data: Any) -> Any:
        return reject_legacy_throttle(data, path="run.throttle")
