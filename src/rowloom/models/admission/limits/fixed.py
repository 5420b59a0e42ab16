"""`FixedLimit`: a constant concurrency limit (no learning), for endpoints whose capacity is known.

Owns one number; must not adapt.
"""

from __future__ import annotations

from rowloom.models.types import Outcome


class FixedLimit:
    """Always `limit`; samples are ignored."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("a fixed limit must be at least 1")
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def epoch(self) -> int:
        return 0

    @property
    def min_limit(self) -> int:
        return self._limit

    @property
    def max_limit(self) -> int:
        return self._limit

    @property
    def reason(self) -> str:
        return "fixed"

    def on_sample(
        self,
        start: float,
        rtt: float,
        in_flight: int,
        dropped: bool,
        *,
        epoch: int | None = None,
        in_flight_at_start: int | None = None,
        cause: Outcome | None = None,
        tokens: int | None = None,
        load: float | None = None,
    ) -> None:
        return None

    def restart(self, value: int) -> None:
        return None  # the capacity is known: an outage changes nothing
