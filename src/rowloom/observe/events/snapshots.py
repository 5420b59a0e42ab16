"""Capacity snapshots: what each endpoint may carry now, as request admission sees it.

Values only, normalised to JSON types when built; emitted by the engine at job start, with every health snapshot
and at job end. Owns no logic beyond reshaping `RequestRuntime.snapshot()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rowloom.observe.events.base import Event, register_event, to_json_value

# The keys of an endpoint's admission snapshot that describe capacity (the rest is live state we keep too).
CAPACITY_KEYS = (
    "aliases",
    "algorithm",
    "limit",
    "min_limit",
    "max_limit",
    "observed_max_limit",
    "in_flight",
    "peak_in_flight",
    "waiters",
    "cooldown_remaining_s",
    "rate_limited",
    "stragglers",
    "background_overloads",
)


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CapacitySnapshot(Event):
    """Per endpoint: configured caps (min/max limit), current adaptive limit, observed maxima, live load.

    `reason` says why it was taken: `job_started`, `health` (periodic, beside a HealthSnapshot), `job_completed`.
    """

    kind: ClassVar[str] = "capacity_snapshot"
    reason: str = "health"
    endpoints: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Mapping[str, Mapping[str, Any]], reason: str) -> CapacitySnapshot:
        """Build from `RequestRuntime.snapshot()`, keeping the capacity keys as JSON values."""
        endpoints = {
            str(label): {key: to_json_value(view[key]) for key in CAPACITY_KEYS if key in view}
            for label, view in snapshot.items()
        }
        return cls(reason=reason, endpoints=endpoints)
