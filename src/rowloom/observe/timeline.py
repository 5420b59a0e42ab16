"""Metrics derived from a run's event log: in-flight, limit and queue series per endpoint, utilisation, frontier
width, and the split of idle request capacity by cause.

Reads plain event dicts (as `read_jsonl` returns them), so the report, the Perfetto export and the benchmark suite
compute the same numbers from the same rules. Owns no I/O and no rendering.

Idle rule. An endpoint's idle capacity at time t is `max(0, limit(t) - in_flight(t))` request slots; integrated
over the run it is slot-seconds. Each idle interval is charged to exactly one cause, the first that holds:

1. `rate_limited` — the endpoint is cooling down (CooldownStarted..CooldownEnded) or an attempt answered 429 is
   waiting out its Retry-After before it retries (RequestRetried with outcome rate_limited, for `delay_s`).
2. `admission_blocked` — demand for the endpoint exists but did not go out: request attempts wait in its queue
   (RequestQueued not yet admitted), or tasks of its model pools wait in the ready queue (TaskQueued not yet
   TaskAdmitted; resynchronised from each HealthSnapshot).
3. `frontier_limited` — no demand for the endpoint is queued, but row groups are still pending admission: the
   frontier (row groups in flight) holds back work that exists.
4. `no_ready_work` — nothing is queued and every row group has been admitted: the remaining work waits on
   dependencies or on other endpoints (typically the tail of a run).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rowloom.observe.events.request import POOL_QUEUE_PREFIX
from rowloom.observe.sources import SourceSums, belongs_to, source_of

IDLE_CAUSES = ("rate_limited", "admission_blocked", "frontier_limited", "no_ready_work")
MODEL_POOL_PREFIX = "model:"


# ------------------------------------------------------------------ selecting one job


def job_ids(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of the jobs that started in an event log, in order (a log may hold several appended runs)."""
    return [str(e["job"]) for e in events if e.get("kind") == "job_started" and e.get("job")]


def select_job(events: Sequence[Mapping[str, Any]], job: str | None = None) -> list[Mapping[str, Any]]:
    """The events of one job: `job`, or the last job that started in the log; a log without job ids is kept whole."""
    if job is None:
        started = job_ids(events)
        if not started:
            return list(events)
        job = started[-1]
    chosen = [e for e in events if belongs_to(e, job)]  # with its workers' events in a Ray run
    if not chosen:
        raise ValueError(f"no events of job {job!r} in this log (jobs: {', '.join(job_ids(events)) or 'none'})")
    return chosen


# ------------------------------------------------------------------ step series


@dataclass
class Series:
    """A piecewise-constant series: value `v[i]` holds from `t[i]` until `t[i+1]` (seconds from job start)."""

    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def set(self, t: float, value: float) -> None:
        """Record that the value is `value` from `t` on (same-time updates keep the last)."""
        if self.t and self.t[-1] == t:
            self.v[-1] = value
            if len(self.v) > 1 and self.v[-2] == value:
                self.t.pop()
                self.v.pop()
        elif not self.v or self.v[-1] != value:
            self.t.append(t)
            self.v.append(value)

    def at(self, t: float) -> float:
        """The value at time `t` (0 before the first point)."""
        i = bisect.bisect_right(self.t, t) - 1
        return self.v[i] if i >= 0 else 0.0

    def integral(self, start: float, end: float) -> float:
        """The area under the series between `start` and `end`."""
        if end <= start or not self.t:
            return 0.0
        total = 0.0
        i = max(0, bisect.bisect_right(self.t, start) - 1)
        while i < len(self.t) and self.t[i] < end:
            lo = max(start, self.t[i])
            hi = min(end, self.t[i + 1] if i + 1 < len(self.t) else end)
            if hi > lo:
                total += self.v[i] * (hi - lo)
            i += 1
        return total

    def mean(self, start: float, end: float) -> float:
        """The time-weighted mean between `start` and `end`."""
        return self.integral(start, end) / (end - start) if end > start else 0.0

    def resample(self, start: float, end: float, bins: int) -> tuple[list[float], list[float]]:
        """Time-weighted means over `bins` equal bins: (bin centres, means)."""
        if end <= start or bins <= 0:
            return [], []
        width = (end - start) / bins
        edges = [start + i * width for i in range(bins + 1)]
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(bins)]
        return centres, [self.mean(edges[i], edges[i + 1]) for i in range(bins)]

    def steps(self, end: float) -> tuple[list[float], list[float]]:
        """Points for a step plot (`line_shape='hv'`), closed at `end`."""
        if not self.t:
            return [], []
        return [*self.t, end], [*self.v, self.v[-1]]


# ------------------------------------------------------------------ the timeline


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
    """One endpoint (request resource key): its series, counts and idle split."""

    key: str
    aliases: set[str] = field(default_factory=set)
    limit: Series = field(default_factory=Series)
    in_flight: Series = field(default_factory=Series)
    queued: Series = field(default_factory=Series)
    max_limit: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    latency_sum_s: float = 0.0
    idle_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(IDLE_CAUSES, 0.0))
    idle_bins: dict[str, list[float]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Attempts that ended (any outcome)."""
        return sum(self.outcomes.values())

    @property
    def mean_latency_s(self) -> float:
        """Mean latency of the attempts that ended."""
        return self.latency_sum_s / self.requests if self.requests else 0.0


@dataclass
class PoolTimeline:
    """One task resource pool: tasks holding a lease and tasks waiting in the ready queue."""

    name: str
    in_use: Series = field(default_factory=Series)
    queued: Series = field(default_factory=Series)


@dataclass
class Timeline:
    """Everything the report plots, derived from one job's events (times in seconds from job start)."""

    origin: float
    end: float
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
        """The edges of the bins that `idle_bins` and `utilisation_series` use."""
        width = self.end / self.bins if self.bins else 0.0
        return [i * width for i in range(self.bins + 1)]

    def utilisation(self, key: str) -> float:
        """Busy share of an endpoint's capacity over the run: ∫min(in_flight, limit) / ∫limit."""
        ep = self.endpoints[key]
        capacity = ep.limit.integral(0.0, self.end)
        idle = sum(ep.idle_s.values())
        return max(0.0, min(1.0, (capacity - idle) / capacity)) if capacity > 0 else 0.0

    def utilisation_series(self, key: str) -> tuple[list[float], list[float]]:
        """Per bin: busy share of the endpoint's capacity (1 - idle / capacity)."""
        ep = self.endpoints[key]
        edges = self.bin_edges()
        centres, values = [], []
        for i in range(self.bins):
            capacity = ep.limit.integral(edges[i], edges[i + 1])
            idle = sum(ep.idle_bins[c][i] for c in IDLE_CAUSES)
            centres.append((edges[i] + edges[i + 1]) / 2)
            values.append(max(0.0, min(1.0, 1.0 - idle / capacity)) if capacity > 0 else 0.0)
        return centres, values

    def ideal_wall_s(self) -> float | None:
        """The wall-time lower bound: per endpoint requests × mean latency ÷ mean limit; the slowest endpoint wins."""
        bounds = []
        for ep in self.endpoints.values():
            mean_limit = ep.limit.mean(0.0, self.end)
            if ep.requests and mean_limit > 0:
                bounds.append(ep.requests * ep.mean_latency_s / mean_limit)
        return max(bounds) if bounds else None

    def idle_totals(self) -> dict[str, float]:
        """Idle slot-seconds by cause, summed over endpoints."""
        return {c: sum(ep.idle_s[c] for ep in self.endpoints.values()) for c in IDLE_CAUSES}


def build_timeline(events: Sequence[Mapping[str, Any]], *, bins: int = 200) -> Timeline:
    """Sweep one job's events in time order and derive every series and the idle split (see the module rule)."""
    return _Sweep(events, bins).run()


class _Sweep:
    """The state machine of one pass over the events; idle is charged for each interval before an event applies."""

    def __init__(self, events: Sequence[Mapping[str, Any]], bins: int):
        self.events = sorted((e for e in events if isinstance(e.get("ts"), int | float)), key=lambda e: e["ts"])
        started = next((e for e in self.events if e.get("kind") == "job_started"), None)
        self.job: dict[str, Any] = dict(started) if started else {}
        done = next((e for e in reversed(self.events) if e.get("kind") == "job_completed"), None)
        self.completed: dict[str, Any] = dict(done) if done else {}
        self.origin = float(started["ts"]) if started else (float(self.events[0]["ts"]) if self.events else 0.0)
        last = float(self.events[-1]["ts"]) if self.events else self.origin
        self.end = max(0.0, last - self.origin)
        self.bins = max(1, bins)
        self.endpoints: dict[str, EndpointTimeline] = {}
        self.pools: dict[str, PoolTimeline] = {}
        self.alias_key: dict[str, str] = {}
        self.frontier_target = Series()
        self.row_groups_in_flight = Series()
        # live state
        # Gauges are kept per source (a Ray worker) and summed: each worker reports its own part.
        self.waiting = SourceSums()  # endpoint -> request attempts queued, not yet admitted
        self.in_flight: dict[str, int] = {}
        self.limit = SourceSums()  # endpoint -> admission limit (a worker's: its capacity grant)
        self.cooldown_until: dict[str, float] = {}  # endpoint -> absolute ts
        self.down: dict[tuple[str, str], Outage] = {}  # (source, endpoint) -> its outage in progress
        self.retry_until: dict[str, list[float]] = {}  # endpoint -> absolute ts of 429 retries still waiting
        self.pool_queued = SourceSums()
        self.pool_in_use: Counter[str] = Counter()
        self.frontier = SourceSums()  # "target" -> row groups each source's frontier admits
        self.frontier_sources: set[str] = set()
        self.pending_row_groups = int(self.job.get("row_groups", 0)) - int(self.job.get("resumed_row_groups", 0))
        self.active_row_groups = 0
        for label, view in (self.job.get("capacities") or {}).items():
            ep = self._endpoint(label)
            for alias in view.get("aliases") or []:
                ep.aliases.add(alias)
                self.alias_key[alias] = label
            if isinstance(view.get("limit"), int):
                ep.limit.set(0.0, self.limit.set(label, source_of(started or {}), view["limit"]))
            if isinstance(view.get("max_limit"), int):
                ep.max_limit = view["max_limit"]
        self.prev = self.origin

    def _endpoint(self, key: str) -> EndpointTimeline:
        ep = self.endpoints.get(key)
        if ep is None:
            ep = self.endpoints[key] = EndpointTimeline(key)
            ep.idle_bins = {c: [0.0] * self.bins for c in IDLE_CAUSES}
            self.in_flight[key] = 0
            self.retry_until[key] = []
        return ep

    def _pool(self, name: str) -> PoolTimeline:
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = PoolTimeline(name)
        return pool

    def run(self) -> Timeline:
        for event in self.events:
            ts = float(event["ts"])
            if ts > self.prev:
                self._charge_idle(self.prev, ts)
                self.prev = ts
            self._apply(event, ts - self.origin)
        for (_, key), outage in self.down.items():  # still down when the log ends
            self.endpoints[key].outages.append(Outage(outage.start, self.end, outage.last_error, None, False))
        return Timeline(
            origin=self.origin,
            end=self.end,
            bins=self.bins,
            endpoints=self.endpoints,
            pools=self.pools,
            frontier_target=self.frontier_target,
            row_groups_in_flight=self.row_groups_in_flight,
            job=self.job,
            completed=self.completed,
        )

    # ---------------------------------------------------------- idle

    def _cause(self, key: str, ts: float) -> str:
        if self.cooldown_until.get(key, float("-inf")) > ts:
            return "rate_limited"
        retries = self.retry_until[key]
        if retries:
            retries[:] = [u for u in retries if u > ts]
            if retries:
                return "rate_limited"
        if self.waiting.total(key):
            return "admission_blocked"
        aliases = self.endpoints[key].aliases
        if any(self.waiting.total(POOL_QUEUE_PREFIX + a) > 0 for a in aliases):  # its pool's queue
            return "admission_blocked"
        if any(self.pool_queued.total(MODEL_POOL_PREFIX + a) > 0 for a in aliases):
            return "admission_blocked"
        if self.pending_row_groups > 0:
            return "frontier_limited"
        return "no_ready_work"

    def _charge_idle(self, t0: float, t1: float) -> None:
        if t0 < self.origin:
            return
        for key, ep in self.endpoints.items():
            free = self.limit.total(key) - self.in_flight[key]
            if free <= 0:
                continue
            cause = self._cause(key, t0)
            ep.idle_s[cause] += free * (t1 - t0)
            self._spread(ep.idle_bins[cause], t0 - self.origin, t1 - self.origin, free)

    def _spread(self, acc: list[float], a: float, b: float, rate: float) -> None:
        if self.end <= 0:
            return
        width = self.end / self.bins
        i = min(self.bins - 1, int(a / width))
        while a < b and i < self.bins:
            hi = min(b, (i + 1) * width) if i < self.bins - 1 else b
            acc[i] += rate * (hi - a)
            a = hi
            i += 1

    # ---------------------------------------------------------- applying events

    def _apply(self, e: Mapping[str, Any], t: float) -> None:
        kind = e.get("kind")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(e, t)

    def _set_limit(self, key: str, e: Mapping[str, Any], t: float, value: Any) -> None:
        if isinstance(value, int | float):
            self.endpoints[key].limit.set(t, self.limit.set(key, source_of(e), int(value)))

    def _link_alias(self, ep: EndpointTimeline, alias: Any) -> None:
        if alias:
            ep.aliases.add(str(alias))
            self.alias_key[str(alias)] = ep.key

    def _on_request_queued(self, e: Mapping[str, Any], t: float) -> None:
        if e["key"].startswith(POOL_QUEUE_PREFIX):  # a pool's queue: demand on each of its endpoints, not one
            self.waiting.add(e["key"], source_of(e), 1)
            return
        ep = self._endpoint(e["key"])
        self._link_alias(ep, e.get("alias"))
        ep.queued.set(t, self.waiting.add(ep.key, source_of(e), 1))
        self._set_limit(ep.key, e, t, e.get("limit"))

    def _on_request_admitted(self, e: Mapping[str, Any], t: float) -> None:
        # A waiter is admitted by the release that freed its slot (so the event may carry that releaser's
        # correlation ids): a positive wait is what marks an admission from the queue.
        ep = self._endpoint(e["key"])
        self._link_alias(ep, e.get("alias"))
        queue = e.get("queue") or ep.key  # a pool's queue, or the endpoint's own
        if float(e.get("wait_s") or 0.0) > 0.0 and self.waiting.of(queue, source_of(e)) > 0:
            waiting = self.waiting.add(queue, source_of(e), -1)
            if queue == ep.key:
                ep.queued.set(t, waiting)
        self.in_flight[ep.key] += 1
        ep.in_flight.set(t, self.in_flight[ep.key])
        self._set_limit(ep.key, e, t, e.get("limit"))

    def _on_request_completed(self, e: Mapping[str, Any], t: float) -> None:
        ep = self._endpoint(e["key"])
        self.in_flight[ep.key] = max(0, self.in_flight[ep.key] - 1)
        ep.in_flight.set(t, self.in_flight[ep.key])
        ep.outcomes[str(e.get("outcome"))] += 1
        ep.tokens += int(e.get("tokens") or 0)
        ep.latency_sum_s += float(e.get("latency_s") or 0.0)

    def _on_request_retried(self, e: Mapping[str, Any], t: float) -> None:
        if e.get("outcome") == "rate_limited":
            self._endpoint(e["key"])
            self.retry_until[e["key"]].append(float(e["ts"]) + float(e.get("delay_s") or 0.0))

    def _on_limit_changed(self, e: Mapping[str, Any], t: float) -> None:
        self._endpoint(e["key"])
        self._set_limit(e["key"], e, t, e.get("new"))

    def _on_cooldown_started(self, e: Mapping[str, Any], t: float) -> None:
        self._endpoint(e["key"])
        self.cooldown_until[e["key"]] = float(e["ts"]) + float(e.get("duration_s") or 0.0)

    def _on_cooldown_ended(self, e: Mapping[str, Any], t: float) -> None:
        self.cooldown_until.pop(e["key"], None)

    def _on_endpoint_down(self, e: Mapping[str, Any], t: float) -> None:
        self._endpoint(e["key"])
        self.down[(source_of(e), e["key"])] = Outage(t, t, str(e.get("last_error") or ""))

    def _on_endpoint_up(self, e: Mapping[str, Any], t: float) -> None:
        ep = self._endpoint(e["key"])
        outage = self.down.pop((source_of(e), e["key"]), None)
        start = outage.start if outage is not None else max(0.0, t - float(e.get("down_for_s") or 0.0))
        last_error = outage.last_error if outage is not None else ""
        ep.outages.append(Outage(start, t, last_error, int(e.get("probes") or 0)))

    def _on_capacity_snapshot(self, e: Mapping[str, Any], t: float) -> None:
        for label, view in (e.get("endpoints") or {}).items():
            ep = self._endpoint(label)
            for alias in view.get("aliases") or []:
                self._link_alias(ep, alias)
            if isinstance(view.get("max_limit"), int):
                ep.max_limit = view["max_limit"]
            if label not in self.limit:
                self._set_limit(label, e, t, view.get("limit"))
            if isinstance(view.get("waiters"), int):  # exact: resynchronise the derived queue depth
                ep.queued.set(t, self.waiting.set(label, source_of(e), view["waiters"]))

    def _on_task_queued(self, e: Mapping[str, Any], t: float) -> None:
        pool = str(e.get("pool"))
        self._pool(pool).queued.set(t, self.pool_queued.add(pool, source_of(e), 1))

    def _on_task_admitted(self, e: Mapping[str, Any], t: float) -> None:
        pool = str(e.get("pool"))
        self.pool_in_use[pool] += 1
        p = self._pool(pool)
        p.queued.set(t, self.pool_queued.add(pool, source_of(e), -1))
        p.in_use.set(t, self.pool_in_use[pool])

    def _on_task_released(self, e: Mapping[str, Any], t: float) -> None:
        pool = str(e.get("pool"))
        self.pool_in_use[pool] = max(0, self.pool_in_use[pool] - 1)
        self._pool(pool).in_use.set(t, self.pool_in_use[pool])

    def _on_health_snapshot(self, e: Mapping[str, Any], t: float) -> None:
        # Tasks whose row was dropped while they waited leave the ready queue without an event: resynchronise.
        for pool, view in (e.get("pools") or {}).items():
            if isinstance(view, Mapping) and isinstance(view.get("queued"), int):
                self._pool(pool).queued.set(t, self.pool_queued.set(pool, source_of(e), view["queued"]))
        if isinstance(e.get("frontier_target"), int):
            self.frontier_sources.add(source_of(e))
            self.frontier_target.set(t, self.frontier.set("target", source_of(e), e["frontier_target"]))

    def _on_frontier_changed(self, e: Mapping[str, Any], t: float) -> None:
        source = source_of(e)
        if source not in self.frontier_sources and isinstance(e.get("old"), int):  # its target before this change
            self.frontier_sources.add(source)
            before = self.frontier.set("target", source, e["old"])
            if not self.frontier_target.t:
                self.frontier_target.set(0.0, before)
        self.frontier_target.set(t, self.frontier.set("target", source, e.get("new", 0)))

    def _on_row_group_admitted(self, e: Mapping[str, Any], t: float) -> None:
        self.pending_row_groups = max(0, self.pending_row_groups - 1)
        self.active_row_groups += 1
        self.row_groups_in_flight.set(t, self.active_row_groups)

    def _on_row_group_checkpointed(self, e: Mapping[str, Any], t: float) -> None:
        self.active_row_groups = max(0, self.active_row_groups - 1)
        self.row_groups_in_flight.set(t, self.active_row_groups)

    def _on_job_started(self, e: Mapping[str, Any], t: float) -> None:
        self.row_groups_in_flight.set(t, 0)
