"""Events of several sources in one log: a Ray run's workers each emit under `job = "<job>:<worker>"`.

Ids a source hands out (leases, attempts) are unique only within it, and a gauge a source reports (its
adaptive limit, queue depths, frontier target) is its own part of the cluster's value. Readers of a merged log
pair starts with ends per source and sum gauges over sources; a single-process log is one source. Owns no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any


def source_of(event: Mapping[str, Any]) -> str:
    """The source that emitted an event: its job id (a worker's is `<job>:<worker>`)."""
    return str(event.get("job") or "")


def belongs_to(event: Mapping[str, Any], job: str) -> bool:
    """Whether the event is the job's own or one of its workers'."""
    source = source_of(event)
    return source == job or source.startswith(f"{job}:")


class SourceSums:
    """Gauges set or moved per source; `total(name)` is their sum over sources (what the cluster has)."""

    def __init__(self) -> None:
        self._values: dict[tuple[Hashable, str], float] = {}
        self._totals: dict[Hashable, float] = {}

    def set(self, name: Hashable, source: str, value: float) -> float:
        """A source reports its value; returns the new total."""
        old = self._values.get((name, source), 0)
        self._values[(name, source)] = value
        self._totals[name] = self._totals.get(name, 0) + value - old
        return self._totals[name]

    def add(self, name: Hashable, source: str, delta: float) -> float:
        """A source's value moves by `delta` (never below 0); returns the new total."""
        return self.set(name, source, max(0, self._values.get((name, source), 0) + delta))

    def of(self, name: Hashable, source: str) -> float:
        return self._values.get((name, source), 0)

    def total(self, name: Hashable) -> float:
        return self._totals.get(name, 0)

    def __contains__(self, name: Hashable) -> bool:
        return name in self._totals
