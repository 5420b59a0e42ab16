"""Benchmark metrics computed from a run's event log, in one streaming pass.

The span, utilisation and idle split come from the run's one timeline (`observe.timeline`): each scenario
endpoint's slots are counted against its true capacity (the timeline's `capacity` baseline), with the same causes
the report charges against the learned limit. This module adds what only a benchmark asks (latency and queue-age
percentiles, the ideal bound) and names endpoints as scenarios do; it knows nothing of how runs start.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rowloom.observe.event_log import file_lines, replay
from rowloom.observe.timeline import CAPACITY, CapacityFn, EndpointTimeline, KnownEndpoint, Timeline
from rowloom.observe.timeline_builder import TimelineBuilder


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class BenchEndpoint:
    """A scenario endpoint as its metrics see it: the provider its requests' keys (`provider/model`) name, its true
    capacity over job time, and whether a requests/tokens-per-minute budget paces it."""

    provider: str
    capacity: CapacityFn
    paced: bool = False


class MetricsAccumulator:
    """Feed one job's events in time order; read `result()` at the end."""

    def __init__(self, endpoints: Mapping[str, BenchEndpoint]):
        """`endpoints` maps each scenario endpoint's name (its label in results) to what is known of it."""
        self.endpoints = dict(endpoints)
        self._label_of = {ep.provider: label for label, ep in self.endpoints.items()}
        self.timeline = TimelineBuilder(self._known)
        self.latencies: dict[str, list[float]] = {label: [] for label in self.endpoints}  # of successes
        self.queue_ages: list[float] = []
        self.ready_gaps: list[float] = []
        self.lease_waits: list[float] = []
        self.advisory_skips = 0
        self.rows_written = 0
        self.rows_dropped = 0

    def label(self, key: str) -> str | None:
        """The scenario endpoint an endpoint key belongs to (by its provider), if any."""
        return self._label_of.get(str(key).partition("/")[0])

    def _known(self, key: str) -> KnownEndpoint | None:
        label = self.label(key)
        if label is None:
            return None
        ep = self.endpoints[label]
        return KnownEndpoint(capacity=ep.capacity, paced=ep.paced)

    # ------------------------------------------------------------ feeding

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> MetricsAccumulator:
        for event in events:
            self.feed(event)
        return self

    def feed(self, e: Mapping[str, Any]) -> None:
        self.timeline.feed(e)
        kind = e.get("kind")
        if kind == "request_admitted":
            self.lease_waits.append(float(e.get("wait_s", 0.0)))
        elif kind == "request_completed" and e.get("outcome") == "success":
            label = self.label(e.get("key", ""))
            if label is not None:
                self.latencies[label].append(float(e.get("latency_s", 0.0)))
        elif kind == "task_admitted":
            age = float(e.get("queued_s", 0.0))
            self.queue_ages.append(age)
            if str(e.get("task", "")).count(":") == 2:  # a cell task: its inputs became ready when it was queued
                self.ready_gaps.append(age)
        elif kind == "row_group_checkpointed":
            self.rows_written += int(e.get("rows", 0))
            self.rows_dropped += int(e.get("dropped", 0))
        elif kind == "advisory_skip":
            self.advisory_skips += 1

    # ------------------------------------------------------------ results

    def result(self) -> dict[str, Any]:
        """Every metric as plain JSON values (seconds, shares, counts)."""
        timeline = self.timeline.finish()
        by_label: dict[str, list[EndpointTimeline]] = {label: [] for label in self.endpoints}
        for key, ep in timeline.endpoints.items():
            label = self.label(key)
            if label is not None:
                by_label[label].append(ep)
        outcomes: Counter[str] = Counter()
        for eps in by_label.values():
            for ep in eps:
                outcomes.update(ep.outcomes)
        total = sum(outcomes.values())
        endpoints = {label: self._endpoint(label, eps, total) for label, eps in by_label.items()}
        starts = [ep.first_admission_s for eps in by_label.values() for ep in eps if ep.first_admission_s is not None]
        ends = [ep.last_completion_s for eps in by_label.values() for ep in eps if ep.last_completion_s is not None]
        worked = [ep.accounts[CAPACITY].while_working() for eps in by_label.values() for ep in eps]
        offered, busy = sum(o for o, _ in worked), sum(b for _, b in worked)
        return {
            "wall_s": round(_wall_s(timeline), 3),
            "span_s": round(max(ends) - min(starts), 3) if starts and ends else 0.0,
            "requests": total,
            "requests_by_outcome": dict(outcomes),
            "share_429": round(outcomes.get("rate_limited", 0) / total, 4) if total else 0.0,
            "utilisation": round(busy / offered, 4) if offered else 0.0,
            "idle_slot_s": merge_idle(endpoints.values(), "idle_s"),
            "queue_age_p50_s": round(percentile(self.queue_ages, 0.5), 4),
            "queue_age_p95_s": round(percentile(self.queue_ages, 0.95), 4),
            "ready_gap_p50_s": round(percentile(self.ready_gaps, 0.5), 4),
            "ready_gap_p95_s": round(percentile(self.ready_gaps, 0.95), 4),
            "lease_wait_p50_s": round(percentile(self.lease_waits, 0.5), 4),
            "lease_wait_p95_s": round(percentile(self.lease_waits, 0.95), 4),
            "advisory_skips": self.advisory_skips,
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "frontier_max": int(timeline.row_groups_in_flight.peak),
            "endpoints": endpoints,
        }

    def _endpoint(self, label: str, eps: list[EndpointTimeline], total: int) -> dict[str, Any]:
        """One scenario endpoint's figures (the timeline's endpoints whose keys name its provider, summed)."""
        outcomes: Counter[str] = Counter()
        for ep in eps:
            outcomes.update(ep.outcomes)
        completed, success = sum(outcomes.values()), outcomes.get("success", 0)
        first = min((ep.first_admission_s for ep in eps if ep.first_admission_s is not None), default=None)
        last = max((ep.last_completion_s for ep in eps if ep.last_completion_s is not None), default=None)
        span = last - first if first is not None and last is not None else 0.0
        worked = [ep.accounts[CAPACITY].while_working() for ep in eps]
        offered, busy = sum(o for o, _ in worked), sum(b for _, b in worked)
        idle: Counter[str] = Counter()
        for ep in eps:  # idle after an endpoint's last request is included: it shows the tail
            idle.update(ep.idle_s(CAPACITY))
        limits = [(t, int(v)) for ep in eps for t, v in ep.limit.recent]
        latencies = self.latencies[label]
        return {
            "utilisation": round(busy / offered, 4) if offered else 0.0,  # while it has work
            "span_s": round(span, 3),
            "requests": completed,
            "share": round(completed / total, 4) if total else 0.0,  # of every request attempt of the run
            "success": success,
            "rate_limited": outcomes.get("rate_limited", 0),
            "peak_in_flight": int(max((ep.in_flight.peak for ep in eps), default=0)),
            "first_dispatch_s": round(first, 4) if first is not None else None,
            "latency_mean_s": round(sum(latencies) / len(latencies), 4) if latencies else 0.0,
            "latency_p50_s": round(percentile(latencies, 0.5), 4),
            "latency_p95_s": round(percentile(latencies, 0.95), 4),
            "throughput_rps": round(success / span, 2) if span else 0.0,
            "limit_final": limits[-1][1] if limits else None,
            "limit_timeline": [(round(t, 3), n) for t, n in limits[-200:]],
            "idle_s": {k: round(v, 3) for k, v in sorted(idle.items()) if v > 0},
        }


def _wall_s(timeline: Timeline) -> float:
    """Job start to JobCompleted (0 when the job did not complete)."""
    ts = timeline.completed.get("ts")
    return float(ts) - timeline.origin if isinstance(ts, int | float) else 0.0


def measure(events_path: str | Path, endpoints: Mapping[str, BenchEndpoint]) -> dict[str, Any]:
    """The metrics of the (last) job of an event log, streamed in time order."""
    return replay(file_lines(events_path), lambda events: MetricsAccumulator(endpoints).feed_all(events).result())


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


def merge_idle(results: Iterable[Mapping[str, Any]], key: str = "idle_slot_s") -> dict[str, float]:
    """Sum idle-slot seconds by cause over several results (or endpoints, with `key="idle_s"`)."""
    total: defaultdict[str, float] = defaultdict(float)
    for result in results:
        for cause, seconds in result.get(key, {}).items():
            total[cause] += seconds
    return {cause: round(seconds, 3) for cause, seconds in sorted(total.items())}
