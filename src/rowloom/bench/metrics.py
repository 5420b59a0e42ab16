"""Benchmark metrics computed from a run's event log, in one streaming pass (a 100k-record log fits).

Owns the definitions of span, ideal bound, utilisation and the idle split; knows nothing of how runs start.
Idle model capacity (capacity − in flight, integrated over time) is charged to the first state that holds:
rate_limited (the endpoint is cooling down, its last reply was a 429, or work waits on its rpm/tpm budget),
admission_blocked (request waiters
queued, or ready tasks for the endpoint not admitted), frontier_limited (no ready work for the endpoint but row
groups still wait outside the frontier), starved (no ready work and nothing left to admit: dependencies/tail).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CapacityFn = Callable[[float], float]  # seconds since job start -> endpoint capacity


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class _Endpoint:
    capacity: CapacityFn
    in_flight: int = 0
    waiters: int = 0
    cooling: bool = False
    last_429: bool = False
    busy_area: float = 0.0
    capacity_area: float = 0.0
    # the areas as of the endpoint's last completion: utilisation "while it has work"
    busy_at_last: float = 0.0
    capacity_at_last: float = 0.0
    idle: Counter[str] = field(default_factory=Counter)
    first_dispatch: float | None = None
    first_admit: float | None = None
    last_complete: float | None = None
    completed: int = 0
    success: int = 0
    rate_limited: int = 0
    latencies: list[float] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)
    peak_in_flight: int = 0


class MetricsAccumulator:
    """Feed events (dicts as written to JSONL) in emission order; read `result()` at the end."""

    def __init__(
        self,
        capacities: Mapping[str, CapacityFn],
        paced: Iterable[str] = (),
        aliases: Mapping[str, Iterable[str]] | None = None,
        providers: Mapping[str, str] | None = None,
    ):
        """`capacities` maps an endpoint to its capacity over time (seconds since job start); `paced` names
        endpoints under a requests/tokens-per-minute budget, whose queued waiting is rate limiting. `aliases`
        lists the model aliases that share each endpoint (default: an endpoint is named by its one alias).
        `providers` maps endpoints to their provider: an event whose key (`provider/model`) names one of them
        counts for that endpoint whatever its alias (a pool's alias spreads over several endpoints)."""
        self.endpoints = {name: _Endpoint(cap) for name, cap in capacities.items()}
        self.paced = frozenset(paced)
        members = aliases or {name: (name,) for name in capacities}
        self._endpoint_of = {alias: name for name, group in members.items() for alias in group}
        self._endpoint_of_provider = {provider: name for name, provider in (providers or {}).items()}
        self._pools = {name: [f"model:{alias}" for alias in group] for name, group in members.items()}
        self.t0: float | None = None
        self.t_end: float | None = None
        self.last_ts: float | None = None
        self.pool_ready: Counter[str] = Counter()  # ready tasks per task pool
        self.pending_groups = 0
        self.queue_ages: list[float] = []
        self.ready_gaps: list[float] = []
        self.lease_waits: list[float] = []
        self.advisory_skips = 0
        self.outcomes: Counter[str] = Counter()
        self.rows_written = 0
        self.rows_dropped = 0
        self.frontier: list[tuple[float, int]] = []
        self.in_frontier = 0
        self._input_free: set[str] = set()

    # ------------------------------------------------------------ feeding

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> MetricsAccumulator:
        for event in events:
            self.feed(event)
        return self

    def _advance(self, ts: float) -> None:
        if self.t0 is None or self.last_ts is None:
            self.last_ts = ts
            return
        dt = ts - self.last_ts
        if dt <= 0:
            return
        mid = (self.last_ts + ts) / 2 - self.t0
        for alias, ep in self.endpoints.items():
            started = ep.first_admit is not None
            if not started:
                continue
            cap = ep.capacity(mid)
            ep.busy_area += min(ep.in_flight, cap) * dt
            ep.capacity_area += cap * dt
            idle = max(0.0, cap - ep.in_flight) * dt
            if idle > 0:
                ep.idle[self._idle_reason(alias, ep)] += idle
        self.last_ts = ts

    def _idle_reason(self, alias: str, ep: _Endpoint) -> str:
        if ep.cooling or ep.last_429:
            return "rate_limited"
        if ep.waiters > 0 or any(self.pool_ready[pool] > 0 for pool in self._pools[alias]):
            return "rate_limited" if alias in self.paced else "admission_blocked"
        if self.pending_groups > 0:
            return "frontier_limited"
        return "starved"

    def feed(self, e: Mapping[str, Any]) -> None:
        kind = e["kind"]
        ts = float(e["ts"])
        if kind == "job_started":
            self.t0 = ts
            self.last_ts = ts
            self.pending_groups = int(e.get("row_groups", 0)) - int(e.get("resumed_row_groups", 0))
            return
        if self.t0 is None:
            return
        self._advance(ts)
        rel = ts - self.t0
        alias = self._endpoint_of_provider.get(str(e.get("key", "")).partition("/")[0])
        if alias is None:
            alias = self._endpoint_of.get(e.get("alias"))  # type: ignore[arg-type]
        ep = self.endpoints.get(alias) if alias is not None else None
        if kind == "request_queued" and ep is not None:
            ep.waiters = int(e.get("waiters", ep.waiters + 1))
        elif kind == "request_admitted" and ep is not None:
            if ep.waiters > 0:  # while anyone waits, admissions come from the queue (never around it)
                ep.waiters -= 1
            ep.in_flight += 1
            ep.peak_in_flight = max(ep.peak_in_flight, ep.in_flight)
            if ep.first_admit is None:
                ep.first_admit = ts
                ep.first_dispatch = rel
            self.lease_waits.append(float(e.get("wait_s", 0.0)))
            if e.get("limit") is not None and (not ep.limits or ep.limits[-1][1] != e["limit"]):
                ep.limits.append((rel, int(e["limit"])))
        elif kind == "request_completed" and ep is not None:
            ep.in_flight = max(0, ep.in_flight - 1)
            ep.completed += 1
            ep.last_complete = ts
            ep.busy_at_last, ep.capacity_at_last = ep.busy_area, ep.capacity_area
            outcome = str(e.get("outcome"))
            self.outcomes[outcome] += 1
            ep.last_429 = outcome == "rate_limited"
            if outcome == "rate_limited":
                ep.rate_limited += 1
            elif outcome == "success":
                ep.success += 1
                ep.latencies.append(float(e.get("latency_s", 0.0)))
        elif kind == "limit_changed":
            for name, candidate in self.endpoints.items():
                key = str(e.get("key", ""))
                if name == alias or key.endswith(f"/{name}") or key.startswith(f"{name}/"):
                    candidate.limits.append((rel, int(e["new"])))
        elif kind == "cooldown_started" and ep is not None:
            ep.cooling = True
        elif kind == "cooldown_ended" and ep is not None:
            ep.cooling = False
        elif kind == "task_queued":
            self.pool_ready[e.get("pool", "")] += 1
        elif kind == "task_admitted":
            self.pool_ready[e.get("pool", "")] -= 1
            age = float(e.get("queued_s", 0.0))
            self.queue_ages.append(age)
            task = str(e.get("task", ""))
            if task.count(":") == 2:  # a cell task: its inputs became ready when it was queued
                self.ready_gaps.append(age)
        elif kind == "row_group_admitted":
            self.pending_groups = max(0, self.pending_groups - 1)
            self.in_frontier += 1
            self.frontier.append((rel, self.in_frontier))
        elif kind == "row_group_checkpointed":
            self.in_frontier -= 1
            self.frontier.append((rel, self.in_frontier))
            self.rows_written += int(e.get("rows", 0))
            self.rows_dropped += int(e.get("dropped", 0))
        elif kind == "advisory_skip":
            self.advisory_skips += 1
        elif kind == "job_completed":
            self.t_end = ts

    # ------------------------------------------------------------ results

    def result(self) -> dict[str, Any]:
        """Every metric as plain JSON values (seconds, shares, counts)."""
        wall = (self.t_end - self.t0) if self.t0 is not None and self.t_end is not None else 0.0
        starts = [ep.first_admit for ep in self.endpoints.values() if ep.first_admit is not None]
        ends = [ep.last_complete for ep in self.endpoints.values() if ep.last_complete is not None]
        span = (max(ends) - min(starts)) if starts and ends else 0.0
        total = sum(self.outcomes.values())
        endpoints: dict[str, Any] = {}
        idle_total: Counter[str] = Counter()
        for alias, ep in self.endpoints.items():
            idle_total.update(ep.idle)  # idle after an endpoint's last request is included: it shows the tail
            ep_span = (ep.last_complete - ep.first_admit) if ep.first_admit and ep.last_complete else 0.0
            endpoints[alias] = {
                "utilisation": round(ep.busy_at_last / ep.capacity_at_last, 4) if ep.capacity_at_last else 0.0,
                "span_s": round(ep_span, 3),
                "requests": ep.completed,
                "share": round(ep.completed / total, 4) if total else 0.0,  # of every request attempt of the run
                "success": ep.success,
                "rate_limited": ep.rate_limited,
                "peak_in_flight": ep.peak_in_flight,
                "first_dispatch_s": round(ep.first_dispatch, 4) if ep.first_dispatch is not None else None,
                "latency_mean_s": round(sum(ep.latencies) / len(ep.latencies), 4) if ep.latencies else 0.0,
                "latency_p50_s": round(percentile(ep.latencies, 0.5), 4),
                "latency_p95_s": round(percentile(ep.latencies, 0.95), 4),
                "throughput_rps": round(ep.success / ep_span, 2) if ep_span else 0.0,
                "limit_final": ep.limits[-1][1] if ep.limits else None,
                "limit_timeline": [(round(t, 3), n) for t, n in ep.limits[-200:]],
                "idle_s": {k: round(v, 3) for k, v in sorted(ep.idle.items())},
            }
        busy = sum(ep.busy_at_last for ep in self.endpoints.values())
        capacity = sum(ep.capacity_at_last for ep in self.endpoints.values())
        return {
            "wall_s": round(wall, 3),
            "span_s": round(span, 3),
            "requests": total,
            "requests_by_outcome": dict(self.outcomes),
            "share_429": round(self.outcomes.get("rate_limited", 0) / total, 4) if total else 0.0,
            "utilisation": round(busy / capacity, 4) if capacity else 0.0,
            "idle_slot_s": {k: round(v, 3) for k, v in sorted(idle_total.items())},
            "queue_age_p50_s": round(percentile(self.queue_ages, 0.5), 4),
            "queue_age_p95_s": round(percentile(self.queue_ages, 0.95), 4),
            "ready_gap_p50_s": round(percentile(self.ready_gaps, 0.5), 4),
            "ready_gap_p95_s": round(percentile(self.ready_gaps, 0.95), 4),
            "lease_wait_p50_s": round(percentile(self.lease_waits, 0.5), 4),
            "lease_wait_p95_s": round(percentile(self.lease_waits, 0.95), 4),
            "advisory_skips": self.advisory_skips,
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "frontier_max": max((n for _, n in self.frontier), default=0),
            "endpoints": endpoints,
        }


def ideal_span_s(
    requests_per_endpoint: Mapping[str, int],
    latency_s: Mapping[str, float],
    capacity: Mapping[str, CapacityFn],
    *,
    rpm: Mapping[str, int | None] | None = None,
    critical_path_s: float = 0.0,
) -> float:
    """The best possible generation span: the slowest endpoint's work ÷ its capacity (integrated over a
    capacity schedule), its rate-limit bound, or the critical path — whichever is longest."""
    bound = critical_path_s
    for alias, requests in requests_per_endpoint.items():
        if requests <= 0:
            continue
        work = requests * latency_s[alias]  # slot-seconds of service needed
        cap = capacity[alias]
        t, done, step = 0.0, 0.0, 0.01
        while done < work:
            done += cap(t + step / 2) * step
            t += step
        bound = max(bound, t)
        limit = (rpm or {}).get(alias)
        if limit:
            bound = max(bound, requests / (limit / 60.0))
    return bound


def schedule_fn(capacity: int, schedule: Iterable[tuple[float, int]] = ()) -> CapacityFn:
    """Capacity over time from a base capacity and (start second, capacity) steps."""
    steps = sorted(schedule)

    def at(t: float) -> float:
        value = capacity
        for start, cap in steps:
            if start > t:
                break
            value = cap
        return float(value)

    return at


def merge_idle(results: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Sum idle-slot seconds by reason over several results."""
    total: defaultdict[str, float] = defaultdict(float)
    for result in results:
        for reason, seconds in result.get("idle_slot_s", {}).items():
            total[reason] += seconds
    return dict(total)
