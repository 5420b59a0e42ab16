"""Aggregate in-flight caps across resource keys of one provider, or of one provider+model.

Owns cap membership; in-flight counts are read from the lease ledger, never kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rowloom.config.request_admission import AggregateCap
from rowloom.models.admission.keys import ResourceKey


@dataclass(eq=False, slots=True)
class Cap:
    """One aggregate cap and the keys it bounds."""

    label: str
    provider: str
    model: str | None
    max_in_flight: int
    members: list[ResourceKey] = field(default_factory=list)

    def covers(self, key: ResourceKey) -> bool:
        return key.provider == self.provider and (self.model is None or key.model == self.model)

    def in_flight(self, count: Callable[[ResourceKey], int]) -> int:
        return sum(count(member) for member in self.members)


class CapTable:
    """The configured caps, with each registered key attached to those that cover it."""

    def __init__(self, caps: Sequence[AggregateCap]):
        self.caps = [Cap(c.label, c.provider, c.model, c.max_in_flight) for c in caps]

    def attach(self, key: ResourceKey) -> tuple[Cap, ...]:
        """Add `key` to every cap covering it; returns those caps."""
        found = []
        for cap in self.caps:
            if cap.covers(key):
                if key not in cap.members:
                    cap.members.append(key)
                found.append(cap)
        return tuple(found)

    def peers(self, key: ResourceKey) -> list[ResourceKey]:
        """Other keys that share a cap with `key` (a release on `key` may free room for them)."""
        out: list[ResourceKey] = []
        for cap in self.caps:
            if key in cap.members:
                out += [k for k in cap.members if k != key and k not in out]
        return out
