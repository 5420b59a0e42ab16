"""A run's timeline, derived once from its event log: in-flight, limit and queue series per endpoint, task pools,
the frontier, and the split of idle request capacity by cause against two baselines.

The one definition of these figures: the report, the Perfetto trace and the benchmark metrics all read them from
here. This module holds the rule and what the pass yields; `timeline_builder` is the streaming pass itself and
the ways to run it. Owns no I/O and no rendering, and imports nothing of `bench`.

Idle rule. An endpoint's idle capacity at time t is `max(0, baseline(t) - in_flight(t))` request slots, integrated
over the run in slot-seconds. The baselines are named series: `limit`, the adaptive limit admission had learned
(always), and `capacity`, the endpoint's true capacity (when the caller knows it, as a benchmark does from its
scenario). Each idle interval is charged to one cause, the first that holds, the same for both baselines:

1. `rate_limited` — the endpoint is cooling down (CooldownStarted..CooldownEnded), an attempt answered 429 is
   waiting out its Retry-After before it retries (RequestRetried with outcome rate_limited, for `delay_s`), or
   demand waits on an endpoint known to be paced by a requests/tokens-per-minute budget.
2. `admission_blocked` — demand for the endpoint exists but did not go out: request attempts wait in its queue
   or its pool's (RequestQueued not yet admitted; resynchronised from each CapacitySnapshot), or tasks of its model
   pools wait in the ready queue (TaskQueued not yet TaskAdmitted; resynchronised from each HealthSnapshot).
3. `frontier_limited` — no demand for the endpoint is queued, but row groups are still pending admission: the
   frontier (row groups in flight) holds back work that exists.
4. `no_ready_work` — nothing is queued and every row group has been admitted: the remaining work waits on
   dependencies or on other endpoints (typically the tail of a run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rowloom.observe.series import Bins, Series

IDLE_CAUSES = ("rate_limited", "admission_blocked", "frontier_limited", "no_ready_work")
LIMIT = "limit"  # the baseline of the adaptive limit admission learned
CAPACITY = "capacity"  # the baseline of the endpoint's true capacity, when known
MODEL_POOL_PREFIX = "model:"

CapacityFn = Callable[[float], float]  # seconds since job start -> requests the endpoint can serve at once


@dataclass(frozen=True)
class KnownEndpoint:
    """What is known of an endpoint beyond its events (a benchmark knows it from its scenario): its true capacity
    over job time, and whether a requests/tokens-per-minute budget paces it (its queued demand is rate-limited)."""

    capacity: CapacityFn | None = None
    paced: bool = False


#: Endpoint key -> what is known of it (None: only its events).
Known = Callable[[str], KnownEndpoint | None]


@dataclass
class SlotAccount:
    """One endpoint's request slots against one baseline: offered (∫baseline), busy (∫min(in flight, baseline)),
    idle by cause, in total and per time bin, and the totals as of its first admission and its last completion."""

    offered_s: float = 0.0
    busy_s: float = 0.0
    idle_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(IDLE_CAUSES, 0.0))
    offered_bins: Bins = field(default_factory=Bins)
    idle_bins: dict[str, Bins] = field(default_factory=lambda: {c: Bins() for c in IDLE_CAUSES})
    at_first_admission: tuple[float, float] | None = None  # (offered_s, busy_s)
    at_last_completion: tuple[float, float] | None = None

    def utilisation(self) -> float:
        """Busy share of the offered slots over the whole run."""
        return max(0.0, min(1.0, self.busy_s / self.offered_s)) if self.offered_s > 0 else 0.0

    def utilisation_while_working(self) -> float:
        """Busy share of the offered slots from the endpoint's first admission to its last completion."""
        offered, busy = self.while_working()
        return busy / offered if offered > 0 else 0.0

    def while_working(self) -> tuple[float, float]:
        """(offered, busy) slot-seconds from the first admission to the last completion."""
        if self.at_first_admission is None or self.at_last_completion is None:
            return 0.0, 0.0
        return (
            self.at_last_completion[0] - self.at_first_admission[0],
            self.at_last_completion[1] - self.at_first_admission[1],
        )


@dataclass
class Outage:
    """One stretch of time an endpoint was down (EndpointDown..EndpointUp), in seconds from job start."""

    start: float
    end: float
    last_error: str = ""
    probes: int | None = None
    finished: bool = True  # False: still down when the log ends (the run stopped during it)

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass
class EndpointTimeline:
    """One endpoint (request resource key): its series, counts and slot accounts by baseline."""

    key: str
    aliases: set[str] = field(default_factory=set)
    limit: Series = field(default_factory=lambda: Series(recent_steps=200))
    in_flight: Series = field(default_factory=Series)
    queued: Series = field(default_factory=Series)
    max_limit: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    latency_sum_s: float = 0.0
    accounts: dict[str, SlotAccount] = field(default_factory=lambda: {LIMIT: SlotAccount()})
    outages: list[Outage] = field(default_factory=list)
    first_admission_s: float | None = None
    last_completion_s: float | None = None

    @property
    def requests(self) -> int:
        """Attempts that ended (any outcome)."""
        return sum(self.outcomes.values())

    @property
    def mean_latency_s(self) -> float:
        """Mean latency of the attempts that ended."""
        return self.latency_sum_s / self.requests if self.requests else 0.0

    def idle_s(self, baseline: str = LIMIT) -> dict[str, float]:
        """Idle slot-seconds by cause against `baseline` (empty when that baseline is not known)."""
        account = self.accounts.get(baseline)
        return dict(account.idle_s) if account is not None else {}


@dataclass
class PoolTimeline:
    """One task resource pool: tasks holding a lease and tasks waiting in the ready queue."""

    name: str
    in_use: Series = field(default_factory=Series)
    queued: Series = field(default_factory=Series)


@dataclass
class Timeline:
    """Everything derived from one job's events (times in seconds from job start; `bins` bins of `width`)."""

    origin: float
    end: float
    width: float
    bins: int
    endpoints: dict[str, EndpointTimeline]
    pools: dict[str, PoolTimeline]
    frontier_target: Series
    row_groups_in_flight: Series
    job: dict[str, Any]
    completed: dict[str, Any]

    @property
    def duration_s(self) -> float:
        """Seconds from job start to the last event (or JobCompleted)."""
        return self.end

    def bin_edges(self) -> list[float]:
        """The edges of the bins that `idle_bins` and `utilisation_series` use (the last ends at `end`)."""
        return [min(self.end, i * self.width) for i in range(self.bins + 1)]

    def idle_bins(self, key: str, cause: str, baseline: str = LIMIT) -> list[float]:
        """Idle slot-seconds of one cause per bin."""
        return self.endpoints[key].accounts[baseline].idle_bins[cause].at_width(self.width, self.bins)

    def utilisation(self, key: str, baseline: str = LIMIT) -> float:
        """Busy share of an endpoint's slots over the run: ∫min(in_flight, baseline) / ∫baseline."""
        return self.endpoints[key].accounts[baseline].utilisation()

    def utilisation_series(self, key: str, baseline: str = LIMIT) -> tuple[list[float], list[float]]:
        """Per bin: busy share of the endpoint's slots (1 - idle / offered)."""
        account = self.endpoints[key].accounts[baseline]
        offered = account.offered_bins.at_width(self.width, self.bins)
        idle = [account.idle_bins[c].at_width(self.width, self.bins) for c in IDLE_CAUSES]
        edges = self.bin_edges()
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(self.bins)]
        values = [
            max(0.0, min(1.0, 1.0 - sum(b[i] for b in idle) / offered[i])) if offered[i] > 0 else 0.0
            for i in range(self.bins)
        ]
        return centres, values

    def ideal_wall_s(self) -> float | None:
        """The wall-time lower bound: per endpoint requests × mean latency ÷ mean limit; the slowest endpoint wins."""
        bounds = []
        for ep in self.endpoints.values():
            mean_limit = ep.limit.mean(0.0, self.end)
            if ep.requests and mean_limit > 0:
                bounds.append(ep.requests * ep.mean_latency_s / mean_limit)
        return max(bounds) if bounds else None

    def idle_totals(self, baseline: str = LIMIT) -> dict[str, float]:
        """Idle slot-seconds by cause against `baseline`, summed over the endpoints that have it."""
        return {c: sum(ep.idle_s(baseline).get(c, 0.0) for ep in self.endpoints.values()) for c in IDLE_CAUSES}
