"""Benchmark metrics from an event log: utilisation while an endpoint has work, idle split, ideal bound."""

from __future__ import annotations

from rowloom.bench.metrics import BenchEndpoint, MetricsAccumulator, ideal_span_s, percentile, schedule_fn
from rowloom.observe.timeline import IDLE_CAUSES
from rowloom.observe.timeline_builder import build_timeline

KEY = "sim-a/m"


def ev(kind: str, ts: float, **fields) -> dict:
    return {"kind": kind, "ts": ts, **fields}


def req(kind: str, ts: float, **fields) -> dict:
    return ev(kind, ts, key=KEY, alias="a", group="c", **fields)


def endpoint(capacity: int, **schedule) -> dict[str, BenchEndpoint]:
    return {"a": BenchEndpoint("sim-a", schedule_fn(capacity), **schedule)}


def test_utilisation_counts_only_while_the_endpoint_has_work_and_idle_is_split_by_cause():
    events = [
        ev("job_started", 0.0, row_groups=1),
        ev("row_group_admitted", 0.0),
        req("request_admitted", 0.0, wait_s=0.0, limit=2),
        req("request_admitted", 0.0, wait_s=0.0, limit=2),
        req("request_completed", 1.0, outcome="success", latency_s=1.0),
        # one slot idle from 1.0 to 2.0 with no ready work and nothing pending
        req("request_completed", 2.0, outcome="success", latency_s=2.0),
        ev("job_completed", 4.0),
    ]
    result = MetricsAccumulator(endpoint(2)).feed_all(events).result()
    figures = result["endpoints"]["a"]
    assert figures["utilisation"] == 0.75  # 3 busy slot-seconds of 4 until its last completion
    assert figures["idle_s"] == {"no_ready_work": 1.0 + 4.0}  # plus the tail after its last request
    assert result["idle_slot_s"] == figures["idle_s"] and set(figures["idle_s"]) <= set(IDLE_CAUSES)
    assert result["span_s"] == 2.0 and result["wall_s"] == 4.0 and result["utilisation"] == 0.75
    assert result["share_429"] == 0.0 and figures["peak_in_flight"] == 2 and figures["latency_p50_s"] == 1.0


def test_idle_while_tasks_wait_is_admission_blocked_and_while_cooling_is_rate_limited():
    events = [
        ev("job_started", 0.0, row_groups=2),
        req("request_admitted", 0.0, wait_s=0.0, limit=1),
        ev("task_queued", 0.0, pool="model:a"),
        req("request_completed", 0.5, outcome="success", latency_s=0.5),
        # 0.5-1.0: cooling down, with a task waiting -> rate-limited
        req("cooldown_started", 0.5, until=1.0, duration_s=0.5, reason="429"),
        req("cooldown_ended", 1.0),
        # 1.0-1.5: the task still waits, the slot is free -> admission-blocked
        req("request_admitted", 1.5, wait_s=1.0, limit=1),
        req("request_completed", 2.0, outcome="rate_limited", latency_s=0.01),
        ev("job_completed", 2.0),
    ]
    result = MetricsAccumulator(endpoint(1)).feed_all(events).result()
    assert result["endpoints"]["a"]["idle_s"] == {"rate_limited": 0.5, "admission_blocked": 0.5}
    assert result["share_429"] == 0.5


def test_queued_demand_on_a_paced_endpoint_is_rate_limited_and_the_learned_limit_is_its_own_baseline():
    events = [
        ev("job_started", 0.0, row_groups=1, capacities={KEY: {"aliases": ["a"], "limit": 4}}),
        ev("row_group_admitted", 0.0),
        req("request_admitted", 0.0, wait_s=0.0, limit=4),
        req("request_queued", 0.0, waiters=1, in_flight=1, limit=4),
        req("request_admitted", 1.0, wait_s=1.0, limit=4),
        req("request_completed", 1.0, outcome="success", latency_s=1.0),
        req("request_completed", 2.0, outcome="success", latency_s=1.0),
        ev("job_completed", 2.0),
    ]
    result = MetricsAccumulator(endpoint(2, paced=True)).feed_all(events).result()
    assert result["endpoints"]["a"]["idle_s"] == {"rate_limited": 1.0, "no_ready_work": 1.0}
    # The report's timeline of the same events, against the limit admission learned (4 slots, not the true 2):
    # the same causes at the same moments (the report is not told the endpoint is paced: its queue is admission's).
    learned = build_timeline(events).endpoints[KEY].idle_s()
    assert learned == {"rate_limited": 0.0, "admission_blocked": 3.0, "frontier_limited": 0.0, "no_ready_work": 3.0}


def test_ideal_span_integrates_a_capacity_schedule_and_honours_rate_and_critical_path():
    cap = schedule_fn(10, [(1.0, 5)])
    # 20 slot-seconds of work: 10 in the first second, then 5 per second -> 3 seconds
    assert abs(ideal_span_s({"a": 100}, {"a": 0.2}, {"a": cap}) - 3.0) < 0.02
    assert ideal_span_s({"a": 60}, {"a": 0.01}, {"a": schedule_fn(100)}, rpm={"a": 60}) == 60.0
    assert ideal_span_s({"a": 1}, {"a": 0.1}, {"a": schedule_fn(10)}, critical_path_s=0.6) == 0.6


def test_percentile_by_nearest_rank():
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
