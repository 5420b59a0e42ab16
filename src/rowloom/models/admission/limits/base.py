"""The `Limit` protocol every concurrency-limit algorithm implements, and the epoch stamps that date cuts.

Owns the interface only; algorithms live in their own modules and never see leases, queues or cooldowns.
"""

from __future__ import annotations

import itertools
from typing import Protocol, runtime_checkable

from rowloom.models.types import Outcome

_EPOCHS = itertools.count(1)


def next_epoch() -> int:
    """A fresh cut stamp. One process-wide counter, so a composite can compare the stamps of its parts."""
    return next(_EPOCHS)


@runtime_checkable
class Limit(Protocol):
    """A concurrency limit that learns from samples (Netflix concurrency-limits style).

    A sample is one finished request: when it started, its round trip, how many requests were in flight when
    it finished (itself included), whether the endpoint signalled overload, the limit `epoch` it was admitted
    under, and how many were in flight right after it was admitted (`in_flight_at_start`). Every decrease
    takes a new epoch; an overload sample from an older epoch belongs to a congestion event already answered
    and must not cut again. A success also says how many completion tokens it carried (`tokens`): a long reply
    takes longer without any queueing, which a latency signal must tell apart from load.
    """

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        ...

    @property
    def epoch(self) -> int:
        """Stamp of the last decrease (0 before any); leases carry the value current at admission."""
        ...

    @property
    def min_limit(self) -> int: ...

    @property
    def max_limit(self) -> int: ...

    @property
    def reason(self) -> str:
        """Why the limit last changed (for the LimitChanged event)."""
        ...

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
        """Learn from one finished request; `cause` says what made a dropped one (429, 503/529 or timeout), and
        `tokens` how many completion tokens a successful reply carried (None when the provider did not say)."""
        ...

    def restart(self, value: int) -> None:
        """The endpoint came back after an outage: continue from `value` and grow again (slow start). What was
        learnt about latency may be kept; the limit must not stay below `value` (clamped to its bounds)."""
        ...


def clamp(value: float, low: int, high: int) -> float:
    """`value` bounded to `[low, high]`."""
    return float(min(high, max(low, value)))
