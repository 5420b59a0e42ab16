"""The streaming pass that derives a run's timeline (`observe.timeline`) from its events, one event at a time.

Feed one job's events in time order (`event_log` streams them from a file); `finish()` gives the `Timeline`.
Memory is bounded by the number of endpoints, pools and sources, never by the number of events. Between events
the live gauges (queue depths, in flight, limits, the frontier, the idle cause of the moment) can be read, which
is how the Perfetto trace draws its counters from the same state. Owns no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rowloom.observe.event_log import file_lines, replay
from rowloom.observe.events.request import POOL_QUEUE_PREFIX
from rowloom.observe.series import Series, width_for
from rowloom.observe.sources import SourceSums, source_of
from rowloom.observe.timeline import (
    CAPACITY,
    LIMIT,
    MODEL_POOL_PREFIX,
    EndpointTimeline,
    Known,
    KnownEndpoint,
    Outage,
    PoolTimeline,
    SlotAccount,
    Timeline,
)


def build_timeline(events: Iterable[Mapping[str, Any]], *, known: Known | None = None) -> Timeline:
    """The timeline of one job's events held in memory (sorted by time here; `event_log.select_job` picks a job)."""
    builder = TimelineBuilder(known)
    for event in sorted((e for e in events if isinstance(e.get("ts"), int | float)), key=lambda e: e["ts"]):
        builder.feed(event)
    return builder.finish()


def timeline_of_log(path: str | Path, job: str | None = None, *, known: Known | None = None) -> Timeline:
    """The timeline of one job of a log file (`job`, or the last), streamed: memory does not grow with the log."""
    return replay(file_lines(path), lambda events: TimelineBuilder(known).feed_all(events).finish(), job)


class TimelineBuilder:
    """The state machine of one pass; idle is charged for each interval before the event that ends it applies."""

    def __init__(self, known: Known | None = None):
        self.known = known or (lambda key: None)
        self.origin: float | None = None
        self.prev = 0.0  # absolute ts up to which idle has been charged
        self.job: dict[str, Any] = {}
        self.completed: dict[str, Any] = {}
        self.endpoints: dict[str, EndpointTimeline] = {}
        self.pools: dict[str, PoolTimeline] = {}
        self.facts: dict[str, KnownEndpoint] = {}  # endpoint -> what the caller knows of it
        self.frontier_target = Series()
        self.row_groups_in_flight = Series()
        # Gauges are kept per source (a Ray worker) and summed: each worker reports its own part.
        self.waiting = SourceSums()  # endpoint or pool queue -> request attempts queued, not yet admitted
        self.in_flight: dict[str, int] = {}
        self.limit = SourceSums()  # endpoint -> admission limit (a worker's: its capacity grant)
        self.cooldown_until: dict[str, float] = {}  # endpoint -> absolute ts
        self.down: dict[tuple[str, str], Outage] = {}  # (source, endpoint) -> its outage in progress
        self.retry_until: dict[str, list[float]] = {}  # endpoint -> absolute ts of 429 retries still waiting
        self.pool_queued = SourceSums()
        self.pool_in_use: dict[str, int] = {}
        self.frontier = SourceSums()  # "target" -> row groups each source's frontier admits
        self.frontier_sources: set[str] = set()
        self.pending_row_groups = 0
        self.active_row_groups = 0
        self._handlers = {name[4:]: getattr(self, name) for name in dir(self) if name.startswith("_on_")}

    # ---------------------------------------------------------- feeding

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> TimelineBuilder:
        """Feed every event of `events` in order; returns self."""
        for event in events:
            self.feed(event)
        return self

    def feed(self, event: Mapping[str, Any]) -> None:
        """Apply one event (events come in time order; one earlier than the last applies at the last's time)."""
        raw = event.get("ts")
        if not isinstance(raw, int | float):
            return
        ts = float(raw)
        if self.origin is None:
            self.origin = self.prev = ts
        if ts > self.prev:
            self._charge(self.prev, ts)
            self.prev = ts
        handler = self._handlers.get(event.get("kind"))  # type: ignore[arg-type]
        if handler is not None:
            handler(event, self.prev - self.origin)

    def finish(self) -> Timeline:
        """The timeline of everything fed (series closed at the last event)."""
        origin = self.origin if self.origin is not None else 0.0
        end = max(0.0, self.prev - origin)
        for (_, key), outage in self.down.items():  # still down when the log ends
            self.endpoints[key].outages.append(Outage(outage.start, end, outage.last_error, None, False))
        self.down.clear()
        series = [self.frontier_target, self.row_groups_in_flight]
        series += [s for ep in self.endpoints.values() for s in (ep.limit, ep.in_flight, ep.queued)]
        series += [s for pool in self.pools.values() for s in (pool.in_use, pool.queued)]
        for s in series:
            s.close(end)
        width = width_for(end)
        return Timeline(
            origin=origin,
            end=end,
            width=width,
            bins=max(1, -int(-end // width)),
            endpoints=self.endpoints,
            pools=self.pools,
            frontier_target=self.frontier_target,
            row_groups_in_flight=self.row_groups_in_flight,
            job=self.job,
            completed=self.completed,
        )

    # ---------------------------------------------------------- live gauges (read between events)

    def queued_requests(self, key: str) -> float:
        """Request attempts waiting in an endpoint's (or a pool's) queue now."""
        return self.waiting.total(key)

    def requests_in_flight(self, key: str) -> int:
        return self.in_flight.get(key, 0)

    def admission_limit(self, key: str) -> float | None:
        """The endpoint's adaptive limit now (summed over sources); None before one is known."""
        return self.limit.total(key) if key in self.limit else None

    def queued_tasks(self, pool: str) -> float:
        return self.pool_queued.total(pool)

    def task_leases(self, pool: str) -> int:
        return self.pool_in_use.get(pool, 0)

    def target(self) -> float:
        """The frontier target now (summed over sources)."""
        return self.frontier.total("target")

    def idle_now(self, key: str) -> tuple[str, float]:
        """The cause idle slots of the endpoint are charged to now, and how many are idle against its limit."""
        free = max(0.0, self.limit.total(key) - self.in_flight.get(key, 0))
        return self._cause(key, self.prev), free

    # ---------------------------------------------------------- endpoints and pools

    def _endpoint(self, key: str) -> EndpointTimeline:
        ep = self.endpoints.get(key)
        if ep is None:
            ep = self.endpoints[key] = EndpointTimeline(key)
            facts = self.known(key)
            if facts is not None:
                self.facts[key] = facts
                if facts.capacity is not None:
                    ep.accounts[CAPACITY] = SlotAccount()
            self.in_flight[key] = 0
            self.retry_until[key] = []
        return ep

    def _pool(self, name: str) -> PoolTimeline:
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = PoolTimeline(name)
        return pool

    # ---------------------------------------------------------- idle

    def _cause(self, key: str, ts: float) -> str:
        if self.cooldown_until.get(key, float("-inf")) > ts:
            return "rate_limited"
        retries = self.retry_until.get(key)
        if retries:
            retries[:] = [u for u in retries if u > ts]
            if retries:
                return "rate_limited"
        aliases = self.endpoints[key].aliases
        if (
            self.waiting.total(key)
            or any(self.waiting.total(POOL_QUEUE_PREFIX + a) > 0 for a in aliases)  # its pool's queue
            or any(self.pool_queued.total(MODEL_POOL_PREFIX + a) > 0 for a in aliases)
        ):
            facts = self.facts.get(key)
            return "rate_limited" if facts is not None and facts.paced else "admission_blocked"
        if self.pending_row_groups > 0:
            return "frontier_limited"
        return "no_ready_work"

    def _baseline(self, key: str, name: str, t: float) -> float:
        """The baseline's slots at `t` (the middle of an interval: a capacity step may fall between two events)."""
        if name == LIMIT:
            return self.limit.total(key)
        return self.facts[key].capacity(t)  # type: ignore[misc]  # accounts other than LIMIT exist with a capacity

    def _charge(self, t0: float, t1: float) -> None:
        origin = self.origin or 0.0
        a, b, dt = t0 - origin, t1 - origin, t1 - t0
        for key, ep in self.endpoints.items():
            in_flight = self.in_flight[key]
            cause = None
            for name, account in ep.accounts.items():
                base = self._baseline(key, name, (a + b) / 2)
                account.offered_s += base * dt
                account.offered_bins.add(a, b, base)
                account.busy_s += min(in_flight, base) * dt
                free = base - in_flight
                if free > 0:
                    cause = cause or self._cause(key, t0)
                    account.idle_s[cause] += free * dt
                    account.idle_bins[cause].add(a, b, free)

    # ---------------------------------------------------------- applying events

    def _set_limit(self, key: str, e: Mapping[str, Any], t: float, value: Any) -> None:
        if isinstance(value, int | float):
            self.endpoints[key].limit.set(t, self.limit.set(key, source_of(e), int(value)))

    def _link_alias(self, ep: EndpointTimeline, alias: Any) -> None:
        if alias:
            ep.aliases.add(str(alias))

    def _on_job_started(self, e: Mapping[str, Any], t: float) -> None:
        if self.job:  # a second start in one job's events (a resumed log): the first says what the job was
            return
        self.job = dict(e)
        self.pending_row_groups = int(e.get("row_groups", 0)) - int(e.get("resumed_row_groups", 0))
        for label, view in (e.get("capacities") or {}).items():
            ep = self._endpoint(label)
            for alias in view.get("aliases") or []:
                self._link_alias(ep, alias)
            self._set_limit(label, e, t, view.get("limit") if isinstance(view.get("limit"), int) else None)
            if isinstance(view.get("max_limit"), int):
                ep.max_limit = view["max_limit"]
        self.row_groups_in_flight.set(t, 0)

    def _on_job_completed(self, e: Mapping[str, Any], t: float) -> None:
        self.completed = dict(e)

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
        if ep.first_admission_s is None:
            ep.first_admission_s = t
            for account in ep.accounts.values():
                account.at_first_admission = (account.offered_s, account.busy_s)

    def _on_request_completed(self, e: Mapping[str, Any], t: float) -> None:
        ep = self._endpoint(e["key"])
        self.in_flight[ep.key] = max(0, self.in_flight[ep.key] - 1)
        ep.in_flight.set(t, self.in_flight[ep.key])
        ep.outcomes[str(e.get("outcome"))] += 1
        ep.tokens += int(e.get("tokens") or 0)
        ep.latency_sum_s += float(e.get("latency_s") or 0.0)
        ep.last_completion_s = t
        for account in ep.accounts.values():
            account.at_last_completion = (account.offered_s, account.busy_s)

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
        self.pool_in_use[pool] = self.pool_in_use.get(pool, 0) + 1
        p = self._pool(pool)
        p.queued.set(t, self.pool_queued.add(pool, source_of(e), -1))
        p.in_use.set(t, self.pool_in_use[pool])

    def _on_task_released(self, e: Mapping[str, Any], t: float) -> None:
        pool = str(e.get("pool"))
        self.pool_in_use[pool] = max(0, self.pool_in_use.get(pool, 0) - 1)
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
            if self.frontier_target.empty:
                self.frontier_target.set(0.0, before)
        self.frontier_target.set(t, self.frontier.set("target", source, e.get("new", 0)))

    def _on_row_group_admitted(self, e: Mapping[str, Any], t: float) -> None:
        self.pending_row_groups = max(0, self.pending_row_groups - 1)
        self.active_row_groups += 1
        self.row_groups_in_flight.set(t, self.active_row_groups)

    def _on_row_group_checkpointed(self, e: Mapping[str, Any], t: float) -> None:
        self.active_row_groups = max(0, self.active_row_groups - 1)
        self.row_groups_in_flight.set(t, self.active_row_groups)
