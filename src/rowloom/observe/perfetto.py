"""Chrome trace-event JSON from a run's event log, for ui.perfetto.dev (or chrome://tracing).

Layout: one process per endpoint (request waits and leases as slices, counters for the adaptive limit, requests in
flight and queued), one per task resource pool (task leases as slices, counters for leases held and tasks queued),
one for row groups (a track per row group, admitted -> checkpointed) and one for the job (frontier counters,
instant markers for limit changes, cooldowns and advisory skips). An endpoint's outages are "down" slices on its own
track, from EndpointDown to EndpointUp. Overlapping slices are laid on numbered lanes
(threads) so that every track nests properly. Times are microseconds from job start. Owns no I/O but `write_trace`.

The counters (queue depths, in flight, the adaptive limit, task pools, the frontier) and each endpoint's `idle slots`
by cause are read from the run's one timeline (`timeline_builder.TimelineBuilder`), fed the same events as the trace:
the trace pairs starts with ends into slices, and derives no figure of its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rowloom.observe.event_log import select_job
from rowloom.observe.sources import source_of
from rowloom.observe.timeline import IDLE_CAUSES
from rowloom.observe.timeline_builder import TimelineBuilder

JOB_PID = 1
ROW_GROUPS_PID = 2
_FIRST_DYNAMIC_PID = 10
# First thread id of each lane family.
_LANE_BASES = {"lease": 1, "task": 1, "wait": 100_001, "cooldown": 200_001, "outage": 300_001}
_LANE_NAMES = {"lease": "leases", "task": "leases", "wait": "waits", "cooldown": "cooldowns", "outage": "outages"}


@dataclass(slots=True)
class _Slice:
    name: str
    start: float  # event ts (seconds, clock of the run)
    end: float
    args: dict[str, Any]
    cat: str


@dataclass
class _Process:
    pid: int
    name: str
    sort: int
    slices: dict[str, list[_Slice]] = field(default_factory=dict)  # lane family -> slices
    counters: list[tuple[float, str, Any]] = field(default_factory=list)  # (ts, name, value or {series: value})
    instants: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)


def _attempt_args(e: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    ids = ("job", "row_group", "column", "task", "attempt")
    return {k: e[k] for k in (*ids, *keys) if e.get(k) is not None}


class _TraceBuilder:
    """One pass over the events, pairing starts with ends by their ids, then emission of the trace events."""

    def __init__(self, events: Sequence[Mapping[str, Any]]):
        self.events = sorted((e for e in events if isinstance(e.get("ts"), int | float)), key=lambda e: e["ts"])
        started = next((e for e in self.events if e.get("kind") == "job_started"), None)
        self.origin = float(started["ts"]) if started else (float(self.events[0]["ts"]) if self.events else 0.0)
        self.last = float(self.events[-1]["ts"]) if self.events else self.origin
        self.job = _Process(JOB_PID, "job", 0)
        self.row_groups = _Process(ROW_GROUPS_PID, "row groups", 3)
        self.processes: dict[str, _Process] = {"job": self.job, "rowgroups": self.row_groups}
        self._next_pid = _FIRST_DYNAMIC_PID
        # Lease and attempt ids are unique per source (a Ray worker), so pairs are keyed by source too.
        self.open_waits: dict[tuple[str, str], Mapping[str, Any]] = {}  # (source, attempt) -> RequestQueued
        self.open_leases: dict[tuple[str, str, int], Mapping[str, Any]] = {}  # (source, key, lease) -> admitted
        self.open_tasks: dict[tuple[str, str, int], Mapping[str, Any]] = {}  # (source, pool, lease) -> admitted
        self.open_row_groups: dict[int, Mapping[str, Any]] = {}
        self.open_outages: dict[tuple[str, str], Mapping[str, Any]] = {}  # (source, key) -> EndpointDown
        self.timeline = TimelineBuilder()  # every gauge, summed over sources (a Ray run's workers)
        self.idle_shown: dict[str, tuple[str, float]] = {}  # endpoint -> the idle cause and slots last drawn

    # ---------------------------------------------------------- processes

    def _get(self, ident: str, name: str, sort: int) -> _Process:
        proc = self.processes.get(ident)
        if proc is None:
            proc = self.processes[ident] = _Process(self._next_pid, name, sort)
            self._next_pid += 1
        return proc

    def endpoint(self, key: str) -> _Process:
        return self._get(f"endpoint:{key}", f"endpoint {key}", 1)

    def pool(self, name: str) -> _Process:
        return self._get(f"pool:{name}", f"task pool {name}", 2)

    # ---------------------------------------------------------- the pass

    def build(self) -> dict[str, Any]:
        for e in self.events:
            self.timeline.feed(e)
            handler = getattr(self, f"_on_{e.get('kind')}", None)
            if handler is not None:
                handler(e, float(e["ts"]))
            self._idle_counters(float(e["ts"]))
        self._close_open()
        trace: list[dict[str, Any]] = []
        for proc in sorted(self.processes.values(), key=lambda p: (p.sort, p.pid)):
            trace.extend(self._emit(proc))
        return {
            "traceEvents": trace,
            "displayTimeUnit": "ms",
            "otherData": {"source": "rowloom", "job": self.events[0].get("job") if self.events else None},
        }

    def _close_open(self) -> None:
        """Slices still open at the end (cancelled or interrupted work) end at the last event, marked unfinished."""
        for e in self.open_waits.values():
            self._wait_slice(e, self.last, {"unfinished": True})
        for e in self.open_leases.values():
            self.endpoint(e["key"]).slices.setdefault("lease", []).append(
                _Slice(str(e.get("column") or e.get("group")), e["ts"], self.last, {"unfinished": True}, "request")
            )
        for (_, pool, _), e in self.open_tasks.items():
            self.pool(pool).slices.setdefault("task", []).append(
                _Slice(str(e.get("column")), e["ts"], self.last, {"unfinished": True}, "task")
            )
        for e in self.open_outages.values():
            self._outage_slice(e, self.last, {"unfinished": True})
        for index, e in self.open_row_groups.items():
            self.row_groups.slices.setdefault(f"rg{index}", []).append(
                _Slice(f"row group {index}", e["ts"], self.last, {"unfinished": True}, "row_group")
            )

    def _wait_slice(self, queued: Mapping[str, Any], end: float, extra: dict[str, Any]) -> None:
        args = _attempt_args(queued, "group") | extra
        self.endpoint(queued["key"]).slices.setdefault("wait", []).append(
            _Slice(f"wait {queued.get('column') or queued.get('group')}", queued["ts"], end, args, "request_wait")
        )

    def _count(self, proc: _Process, ts: float, name: str, value: float | None) -> None:
        if value is not None:
            proc.counters.append((ts, name, value))

    def _limit(self, proc: _Process, ts: float, key: str) -> None:
        self._count(proc, ts, "adaptive limit", self.timeline.admission_limit(key))

    def _idle_counters(self, ts: float) -> None:
        """Each endpoint's idle slots against its limit, by the cause they are charged to, when they change."""
        for key in self.timeline.endpoints:
            now = self.timeline.idle_now(key)
            if self.idle_shown.get(key) != now:
                self.idle_shown[key] = now
                cause, free = now
                args = {c: free if c == cause else 0 for c in IDLE_CAUSES}
                self.endpoint(key).counters.append((ts, "idle slots", args))

    # requests
    def _on_request_queued(self, e: Mapping[str, Any], ts: float) -> None:
        key = e["key"]
        self.open_waits[(source_of(e), str(e.get("attempt")))] = e
        proc = self.endpoint(key)
        self._count(proc, ts, "queued requests", self.timeline.queued_requests(key))
        self._limit(proc, ts, key)

    def _on_request_admitted(self, e: Mapping[str, Any], ts: float) -> None:
        # A waiter is admitted by the release that freed its slot, so this event may carry the releasing attempt's
        # correlation ids: the wait is paired later, by lease, from the attempt's own RequestCompleted.
        key, source = e["key"], source_of(e)
        proc = self.endpoint(key)
        queue = e.get("queue") or key  # a pool's queue, or the endpoint's own
        if float(e.get("wait_s") or 0.0) > 0.0:
            self._count(self.endpoint(queue), ts, "queued requests", self.timeline.queued_requests(queue))
        self.open_leases[(source, key, int(e["lease"]))] = e
        self._count(proc, ts, "requests in flight", self.timeline.requests_in_flight(key))
        self._limit(proc, ts, key)

    def _on_request_completed(self, e: Mapping[str, Any], ts: float) -> None:
        key, source = e["key"], source_of(e)
        proc = self.endpoint(key)
        admitted = self.open_leases.pop((source, key, int(e["lease"])), None)
        start = float(admitted["ts"]) if admitted is not None else ts - float(e.get("latency_s") or 0.0)
        queued = self.open_waits.pop((source, str(e.get("attempt"))), None)
        if queued is not None:
            self._wait_slice(queued, start, {"wait_s": admitted.get("wait_s") if admitted is not None else None})
        outcome = str(e.get("outcome"))
        label = str(e.get("column") or e.get("group"))
        name = label if outcome == "success" else f"{label} ({outcome})"
        args = _attempt_args(e, "group", "lease", "outcome", "latency_s", "tokens")
        proc.slices.setdefault("lease", []).append(_Slice(name, start, ts, args, "request"))
        self._count(proc, ts, "requests in flight", self.timeline.requests_in_flight(key))

    def _on_capacity_snapshot(self, e: Mapping[str, Any], ts: float) -> None:
        for key, view in (e.get("endpoints") or {}).items():
            proc = self.endpoint(key)
            self._limit(proc, ts, key)
            if isinstance(view.get("waiters"), int):  # exact: the timeline resynchronised its queue depth
                self._count(proc, ts, "queued requests", self.timeline.queued_requests(key))

    def _on_request_rate_limited(self, e: Mapping[str, Any], ts: float) -> None:
        self.endpoint(e["key"]).instants.append((ts, "429", _attempt_args(e, "retry_after_s", "consecutive")))

    def _on_limit_changed(self, e: Mapping[str, Any], ts: float) -> None:
        proc = self.endpoint(e["key"])
        self._limit(proc, ts, e["key"])
        proc.instants.append((ts, f"limit {e['old']}→{e['new']}", {"reason": e.get("reason")}))

    def _on_cooldown_started(self, e: Mapping[str, Any], ts: float) -> None:
        proc = self.endpoint(e["key"])
        proc.slices.setdefault("cooldown", []).append(
            _Slice(f"cooldown ({e.get('reason')})", ts, ts + float(e.get("duration_s") or 0.0), {}, "cooldown")
        )

    def _on_endpoint_down(self, e: Mapping[str, Any], ts: float) -> None:
        self.open_outages[(source_of(e), e["key"])] = e

    def _on_endpoint_up(self, e: Mapping[str, Any], ts: float) -> None:
        down = self.open_outages.pop((source_of(e), e["key"]), None)
        start = {"ts": ts - float(e.get("down_for_s") or 0.0), "key": e["key"]} if down is None else down
        self._outage_slice(start, ts, {"down_for_s": e.get("down_for_s"), "probes": e.get("probes")})

    def _outage_slice(self, down: Mapping[str, Any], end: float, extra: dict[str, Any]) -> None:
        args = {k: down[k] for k in ("url", "last_error", "failures") if down.get(k) is not None} | extra
        self.endpoint(down["key"]).slices.setdefault("outage", []).append(
            _Slice("down", float(down["ts"]), end, args, "outage")
        )

    # tasks
    def _on_task_queued(self, e: Mapping[str, Any], ts: float) -> None:
        pool = str(e.get("pool"))
        self._count(self.pool(pool), ts, "tasks queued", self.timeline.queued_tasks(pool))

    def _on_task_admitted(self, e: Mapping[str, Any], ts: float) -> None:
        pool, source = str(e.get("pool")), source_of(e)
        proc = self.pool(pool)
        self.open_tasks[(source, pool, int(e["lease"]))] = e
        self._count(proc, ts, "tasks queued", self.timeline.queued_tasks(pool))
        self._count(proc, ts, "task leases", self.timeline.task_leases(pool))

    def _on_task_released(self, e: Mapping[str, Any], ts: float) -> None:
        pool = str(e.get("pool"))
        proc = self.pool(pool)
        admitted = self.open_tasks.pop((source_of(e), pool, int(e["lease"])), None)
        start = float(admitted["ts"]) if admitted is not None else ts - float(e.get("run_s") or 0.0)
        outcome = str(e.get("outcome"))
        name = str(e.get("column")) if outcome == "done" else f"{e.get('column')} ({outcome})"
        args = _attempt_args(e, "group", "lease", "outcome", "reason")
        if admitted is not None and admitted.get("queued_s") is not None:
            args["queued_s"] = admitted["queued_s"]
        proc.slices.setdefault("task", []).append(_Slice(name, start, ts, args, "task"))
        self._count(proc, ts, "task leases", self.timeline.task_leases(pool))

    def _on_task_blocked(self, e: Mapping[str, Any], ts: float) -> None:
        self.pool(str(e.get("pool"))).instants.append((ts, f"blocked: {e.get('reason')}", _attempt_args(e, "group")))

    def _on_health_snapshot(self, e: Mapping[str, Any], ts: float) -> None:
        for pool, view in (e.get("pools") or {}).items():
            if isinstance(view, Mapping) and isinstance(view.get("queued"), int):
                self._count(self.pool(pool), ts, "tasks queued", self.timeline.queued_tasks(pool))
        self._count(self.job, ts, "frontier target", self.timeline.target())
        self.job.instants.append((ts, "health", {k: v for k, v in e.items() if k not in ("kind", "ts")}))

    # row groups and the job
    def _on_row_group_admitted(self, e: Mapping[str, Any], ts: float) -> None:
        self.open_row_groups[int(e["row_group"])] = e
        self._count(self.job, ts, "row groups in flight", self.timeline.active_row_groups)

    def _on_row_group_checkpointed(self, e: Mapping[str, Any], ts: float) -> None:
        index = int(e["row_group"])
        admitted = self.open_row_groups.pop(index, None)
        start = float(admitted["ts"]) if admitted is not None else ts
        args = {"rows": e.get("rows"), "dropped": e.get("dropped"), "file": e.get("file")}
        self.row_groups.slices.setdefault(f"rg{index}", []).append(
            _Slice(f"row group {index}", start, ts, args, "row_group")
        )
        self._count(self.job, ts, "row groups in flight", self.timeline.active_row_groups)

    def _on_frontier_changed(self, e: Mapping[str, Any], ts: float) -> None:
        if not any(name == "frontier target" for _, name, _ in self.job.counters):  # the target before it changed
            first = self.timeline.frontier_target.v
            self._count(self.job, self.origin, "frontier target", first[0] if first else None)
        self._count(self.job, ts, "frontier target", self.timeline.target())
        self.job.instants.append((ts, f"frontier {e.get('old')}→{e.get('new')}", {"reason": e.get("reason")}))

    def _on_advisory_skip(self, e: Mapping[str, Any], ts: float) -> None:
        args = {k: e.get(k) for k in ("skipped_group", "chosen_group", "pressured_pool")}
        self.job.instants.append((ts, "advisory skip", args))

    def _on_job_started(self, e: Mapping[str, Any], ts: float) -> None:
        args = {k: e.get(k) for k in ("num_records", "row_groups", "resumed_row_groups", "columns")}
        self.job.instants.append((ts, "job started", args))

    def _on_job_completed(self, e: Mapping[str, Any], ts: float) -> None:
        args = {k: e.get(k) for k in ("status", "records_written", "rows_dropped", "wall_s", "message")}
        self.job.instants.append((ts, f"job {e.get('status')}", args))

    # ---------------------------------------------------------- emission

    def _us(self, ts: float) -> float:
        return round((ts - self.origin) * 1e6, 3)

    def _emit(self, proc: _Process) -> Iterable[dict[str, Any]]:
        pid = proc.pid
        yield {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": proc.name}}
        yield {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": proc.sort}}
        yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "markers"}}
        for family, slices in sorted(proc.slices.items(), key=lambda kv: _family_order(kv[0])):
            lanes = _lanes(slices)
            base = _family_base(family)
            for lane in range(max(lanes, default=-1) + 1):
                tid = base + lane
                name = _lane_name(family, lane)
                yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
                yield {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}}
            for s, lane in zip(slices, lanes, strict=True):
                yield {
                    "ph": "X",
                    "name": s.name,
                    "cat": s.cat,
                    "pid": pid,
                    "tid": base + lane,
                    "ts": self._us(s.start),
                    "dur": max(0.0, round((s.end - s.start) * 1e6, 3)),
                    "args": s.args,
                }
        for ts, name, value in proc.counters:
            args = value if isinstance(value, dict) else {"value": value}
            yield {"ph": "C", "name": name, "pid": pid, "tid": 0, "ts": self._us(ts), "args": args}
        for ts, name, args in proc.instants:
            yield {"ph": "i", "name": name, "s": "t", "pid": pid, "tid": 0, "ts": self._us(ts), "args": args}


def _family_order(family: str) -> tuple[int, int, str]:
    if family.startswith("rg"):
        return (3, int(family[2:]), family)
    return ({"outage": -1, "cooldown": 0, "lease": 1, "wait": 2, "task": 1}.get(family, 9), 0, family)


def _family_base(family: str) -> int:
    if family.startswith("rg"):
        return 1 + int(family[2:])  # one track per row group
    return _LANE_BASES.get(family, 1)


def _lane_name(family: str, lane: int) -> str:
    if family.startswith("rg"):
        return f"row group {family[2:]}"  # a row group is admitted once: one slice, one lane
    return f"{_LANE_NAMES.get(family, family)} #{lane}"


def _lanes(slices: list[_Slice]) -> list[int]:
    """Assign each slice the lowest lane free at its start (interval partitioning), so no lane overlaps."""
    order = sorted(range(len(slices)), key=lambda i: (slices[i].start, slices[i].end))
    lanes = [0] * len(slices)
    busy: list[tuple[float, int]] = []  # (end, lane) of slices still running
    free: list[int] = []
    used = 0
    for i in order:
        s = slices[i]
        while busy and busy[0][0] <= s.start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, used = used, used + 1
        lanes[i] = lane
        heapq.heappush(busy, (s.end, lane))
    return lanes


def build_trace(events: Sequence[Mapping[str, Any]], *, job: str | None = None) -> dict[str, Any]:
    """Chrome trace-event JSON (`{"traceEvents": [...]}`) for one job of an event log (the last, by default)."""
    return _TraceBuilder(select_job(events, job)).build()


def write_trace(events: Sequence[Mapping[str, Any]], path: str | Path, *, job: str | None = None) -> Path:
    """Write `build_trace(events)` to `path`; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(build_trace(events, job=job)))
    return out
