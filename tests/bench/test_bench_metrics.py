"""Benchmark metrics from an event log: utilisation while an endpoint has work, idle split, ideal bound."""

from __future__ import annotations

from rowloom.bench.metrics import MetricsAccumulator, ideal_span_s, percentile, schedule_fn


def ev(kind: str, ts: float, **fields) -> dict:
    return {"kind": kind, "ts": ts, **fields}


def test_utilisation_counts_only_while_the_endpoint_has_work_and_idle_is_split_by_reason():
    events = [
        ev("job_started", 0.0, row_groups=1),
        ev("row_group_admitted", 0.0),
        ev("request_admitted", 0.0, alias="a", wait_s=0.0, limit=2),
        ev("request_admitted", 0.0, alias="a", wait_s=0.0, limit=2),
        ev("request_completed", 1.0, alias="a", outcome="success", latency_s=1.0),
        # one slot idle from 1.0 to 2.0 with no ready work and nothing pending: starved
        ev("request_completed", 2.0, alias="a", outcome="success", latency_s=2.0),
        ev("job_completed", 4.0),
    ]
    result = MetricsAccumulator({"a": schedule_fn(2)}).feed_all(events).result()
    endpoint = result["endpoints"]["a"]
    assert endpoint["utilisation"] == 0.75  # 3 busy slot-seconds of 4 until its last completion
    assert endpoint["idle_s"]["starved"] == 1.0 + 4.0  # plus the tail after its last request
    assert result["span_s"] == 2.0 and result["wall_s"] == 4.0
    assert result["share_429"] == 0.0


def test_idle_while_tasks_wait_is_admission_blocked_and_while_cooling_is_rate_limited():
    events = [
        ev("job_started", 0.0, row_groups=2),
        ev("request_admitted", 0.0, alias="a", wait_s=0.0, limit=1),
        ev("task_queued", 0.0, pool="model:a"),
        ev("request_completed", 0.5, alias="a", outcome="success", latency_s=0.5),
        ev("cooldown_started", 0.5, alias="a"),
        ev("request_admitted", 1.0, alias="a", wait_s=0.5, limit=1),
        ev("cooldown_ended", 1.0, alias="a"),
        ev("request_completed", 1.5, alias="a", outcome="rate_limited", latency_s=0.01),
        ev("job_completed", 1.5),
    ]
    result = MetricsAccumulator({"a": schedule_fn(1)}).feed_all(events).result()
    assert result["endpoints"]["a"]["idle_s"] == {"rate_limited": 0.5}
    assert result["share_429"] == 0.5


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
