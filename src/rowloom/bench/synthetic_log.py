"""A synthetic event log of a long run, written through the real event types and sink: for measuring what reading
a log costs (the report, the trace) at sizes a benchmark run would take long to produce. Sends no request.
"""

from __future__ import annotations

import random
from pathlib import Path

from rowloom.observe.events.request import RequestAdmitted, RequestCompleted, RequestQueued
from rowloom.observe.events.scheduler import (
    JobCompleted,
    JobStarted,
    RowGroupAdmitted,
    RowGroupCheckpointed,
    TaskAdmitted,
    TaskQueued,
    TaskReleased,
)
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.sinks import JsonlSink

KEY = "sim/sim-small"
ROWS_PER_GROUP = 100


def write_log(path: Path, requests: int, *, seed: int = 7) -> int:
    """A run of `requests` one-attempt requests on one endpoint of limit 16, 100 rows to a row group: per request
    a task queued, admitted and released and its attempt queued (once 16 are in flight), admitted and completed
    after 40-60 ms. About six events a request; returns how many were written."""
    rng = random.Random(seed)
    sink = JsonlSink(path)
    count = 0

    def emit(event) -> None:
        nonlocal count
        sink.emit(event)
        count += 1

    def tick(t: float) -> float:  # every event a time of its own, as a monotonic clock gives them
        return t + count * 1e-7

    groups = -(-requests // ROWS_PER_GROUP)
    ids = {"job": "big", "row_group": None, "column": None, "task": None, "attempt": None}
    view = {"aliases": ["writer"], "limit": 16, "max_limit": 16, "waiters": 0, "in_flight": 0}
    emit(JobStarted(ts=tick(0.0), **ids, num_records=requests, row_groups=groups, capacities={KEY: view}))
    t, in_flight = 0.0, []
    for n in range(requests):
        group, row = divmod(n, ROWS_PER_GROUP)
        cell = {**ids, "row_group": group, "column": "answer", "task": f"{group}:answer:{row}", "attempt": f"{n}.1"}
        if row == 0:
            emit(RowGroupAdmitted(ts=tick(t), **{**ids, "row_group": group}, rows=ROWS_PER_GROUP, in_flight=1))
            emit(CapacitySnapshot(ts=tick(t), **ids, endpoints={KEY: view}))
        emit(TaskQueued(ts=tick(t), **cell, group="answer", pool="model:writer"))
        emit(TaskAdmitted(ts=tick(t), **cell, group="answer", pool="model:writer", lease=n, queued_s=0.0))
        waited = len(in_flight) >= 16
        if waited:
            queued = {"key": KEY, "alias": "writer", "group": "answer", "waiters": 1, "in_flight": 16, "limit": 16}
            emit(RequestQueued(ts=tick(t), **cell, **queued))
            t = in_flight.pop(0)
            done = {**ids, "attempt": f"{n - 16}.1"}
            emit(RequestCompleted(ts=tick(t), **done, key=KEY, alias="writer", group="answer", lease=n - 16,
                                  outcome="success", latency_s=0.05, tokens=40, usage_known=True,
                                  prompt_tokens=30, completion_tokens=10))  # fmt: skip
            emit(TaskReleased(ts=tick(t), **done, group="answer", pool="model:writer", lease=n - 16, run_s=0.05))
        emit(RequestAdmitted(ts=tick(t), **cell, key=KEY, alias="writer", group="answer", lease=n,
                             wait_s=0.01 if waited else 0.0, in_flight=len(in_flight) + 1, limit=16))  # fmt: skip
        in_flight.append(t + rng.uniform(0.04, 0.06))
        in_flight.sort()
        if row == ROWS_PER_GROUP - 1:
            emit(RowGroupCheckpointed(ts=tick(t), **{**ids, "row_group": group}, rows=ROWS_PER_GROUP))
    for n, end in enumerate(in_flight, start=requests - len(in_flight)):
        emit(RequestCompleted(ts=tick(end), **{**ids, "attempt": f"{n}.1"}, key=KEY, alias="writer", group="answer",
                              lease=n, outcome="success", latency_s=0.05, tokens=40))  # fmt: skip
    emit(JobCompleted(ts=tick(max(in_flight, default=t)), **ids, records_written=requests))
    sink.close()
    return count
