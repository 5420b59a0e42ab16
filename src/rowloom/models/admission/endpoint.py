"""`EndpointState`: everything request admission keeps about one resource key, gathered in one place.

Owns the per-key parts (limit, waiter queue, cooldown, health, budget, caps, aliases, counters); holds no
policy — the controller decides, this only stores and reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rowloom.concurrency.clock import Clock
from rowloom.concurrency.fair_queue import FairQueue
from rowloom.concurrency.wakeup import Wakeup
from rowloom.models.admission.caps import Cap
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.health import EndpointHealth
from rowloom.models.admission.keys import ResourceKey
from rowloom.models.admission.leases import RequestLease
from rowloom.models.admission.limits.base import Limit
from rowloom.models.admission.overload_runs import OverloadRuns
from rowloom.models.admission.rate_budget import RateBudget, TokenBucket
from rowloom.observe.context import Correlation, current

if TYPE_CHECKING:
    from rowloom.models.admission.pools import EndpointPool


@dataclass(eq=False, slots=True)
class Waiter:
    """One queued acquire: what it asked for and the future its lease is delivered on."""

    alias: str | None
    group: str
    tokens: int
    future: asyncio.Future[RequestLease]
    queued_at: float
    # The waiting request's own correlation ids: its admission is decided in the releasing task's context,
    # but the event must link to the request that waited.
    correlation: Correlation = field(default_factory=current)


@dataclass(frozen=True, slots=True)
class AliasBinding:
    """An alias registered on a key: its own in-flight ceiling (None = only the key's) and budgets."""

    ceiling: int | None
    rpm: int | None
    tpm: int | None


class EndpointState:
    """The adaptive admission state of one resource key, shared by every alias that names it."""

    def __init__(
        self, key: ResourceKey, limit: Limit, cooldown: Cooldown, ceiling: int, clock: Clock, health: EndpointHealth
    ):
        self.key = key
        self.label = key.label
        self.limit = limit
        self.ceiling = ceiling
        self.queue: FairQueue[tuple[str | None, str], Waiter] = FairQueue()
        self.cooldown = cooldown
        self.health = health
        self.budget: RateBudget | None = None
        self.caps: tuple[Cap, ...] = ()
        self.peers: list[EndpointState] = []
        self.pools: list[EndpointPool] = []  # pooled aliases whose queued requests this endpoint also serves
        self.latency_s = 0.0  # smoothed round trip of successful requests (0 until the first)
        self.aliases: dict[str, AliasBinding] = {}
        # Whether some alias's own ceiling is below the limit's most (`note_aliases`): only then does an alias
        # ever have to wait while the key has room, and only then are waiters judged alias by alias.
        self.alias_bound = False
        self.failed: BaseException | None = None
        self.cooldown_timer = Wakeup(clock)
        self.budget_timer = Wakeup(clock)
        self.probe_timer = Wakeup(clock)  # the next probe of a down endpoint is due
        self.stop_timer = Wakeup(clock)  # a down endpoint's breaker (or start-up grace) runs out
        self.peak_in_flight = 0
        self.observed_max_limit = limit.limit
        self.rate_limited = 0
        self.issued = 0
        # The newest admission among successful requests, and the timeouts that one overtook (see `feedback`).
        self.newest_success_admitted_at = float("-inf")
        self.stragglers = 0
        self.overload_runs = OverloadRuns()  # which overloads are evidence of too much concurrency

    def note_aliases(self) -> None:
        """Work out `alias_bound` again, after the aliases or the limit changed (registration does both)."""
        most = self.limit.max_limit
        self.alias_bound = any(b.ceiling is not None and b.ceiling < most for b in self.aliases.values())

    def alias_ceiling(self, alias: str | None) -> int | None:
        binding = self.aliases.get(alias) if alias is not None else None
        return None if binding is None else binding.ceiling

    def budgets(self) -> tuple[int | None, int | None]:
        """The tightest rpm and tpm any alias of this key declared (they describe one provider budget)."""
        rpms = [b.rpm for b in self.aliases.values() if b.rpm]
        tpms = [b.tpm for b in self.aliases.values() if b.tpm]
        return (min(rpms) if rpms else None, min(tpms) if tpms else None)

    def refresh_budget(self, *, burst_s: float, now: float) -> None:
        """Rebuild the rpm/tpm budget when the aliases' tightest declared values changed."""
        rpm, tpm = self.budgets()
        current = self.budget
        declared = (
            _per_minute(current.requests if current else None),
            _per_minute(current.tokens if current else None),
        )
        if (rpm, tpm) != declared:
            self.budget = RateBudget(rpm=rpm, tpm=tpm, burst_s=burst_s, now=now) if rpm or tpm else None

    def cancel_timers(self) -> None:
        for timer in (self.cooldown_timer, self.budget_timer, self.probe_timer, self.stop_timer):
            timer.cancel()

    def snapshot(self, in_flight: int, now: float) -> dict[str, Any]:
        """JSON-ready view for observability and the engine's task admission."""
        until = self.cooldown.until
        return {
            "provider": self.key.provider,
            "model": self.key.model,
            "domain": self.key.domain,
            "aliases": sorted(self.aliases),
            "algorithm": type(self.limit).__name__,
            "limit": self.limit.limit,
            "min_limit": self.limit.min_limit,
            "max_limit": self.limit.max_limit,
            "observed_max_limit": self.observed_max_limit,
            "epoch": self.limit.epoch,
            "in_flight": in_flight,
            "peak_in_flight": self.peak_in_flight,
            "waiters": len(self.queue),
            "cooldown_until": until,
            "cooldown_remaining_s": max(0.0, until - now) if until is not None else 0.0,
            "rate_limited": self.rate_limited,
            "stragglers": self.stragglers,
            "background_overloads": self.overload_runs.background,
            "consecutive_429": self.cooldown.consecutive_429,
            "issued": self.issued,
            "failed": None if self.failed is None else str(self.failed),
            **self.health.snapshot(now),
        }


def _per_minute(bucket: TokenBucket | None) -> int | None:
    return None if bucket is None else round(bucket.rate * 60)
