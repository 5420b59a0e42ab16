"""The metrics derived from event logs: step series, utilisation, the ideal bound and the idle-capacity rule."""

from __future__ import annotations

import pytest

from rowloom.observe.event_log import select_job
from rowloom.observe.perfetto import build_trace
from rowloom.observe.series import Series
from rowloom.observe.sinks import read_jsonl
from rowloom.observe.timeline import IDLE_CAUSES
from rowloom.observe.timeline_builder import build_timeline

from .helpers import run_with_events

KEY = "p/m"


def _req(kind: str, ts: float, **fields) -> dict:
    return {"kind": kind, "ts": ts, "job": "j", "key": KEY, "alias": "a", "group": "c", **fields}


def scenario() -> list[dict]:
    """One endpoint, limit 4, over 6 s: each second shows a different reason for its idle slots."""
    return [
        {
            "kind": "job_started",
            "ts": 100.0,
            "job": "j",
            "row_groups": 2,
            "capacities": {KEY: {"aliases": ["a"], "limit": 4, "max_limit": 8}},
        },
        _req("request_admitted", 100.0, attempt="1.1", lease=1, wait_s=0.0, in_flight=1, limit=4),
        # 0-1 s: 3 free slots, nothing queued, both row groups still pending -> frontier-limited
        {"kind": "row_group_admitted", "ts": 101.0, "job": "j", "row_group": 0, "rows": 1, "in_flight": 1},
        {"kind": "row_group_admitted", "ts": 101.0, "job": "j", "row_group": 1, "rows": 1, "in_flight": 2},
        # 1-2 s: everything admitted, nothing queued -> no ready work
        _req("request_queued", 102.0, attempt="2.1", waiters=1, in_flight=1, limit=4),
        # 2-3 s: a request waits in the endpoint's queue -> admission-blocked
        _req("request_admitted", 103.0, attempt="9.9", lease=2, wait_s=1.0, in_flight=2, limit=4),
        _req("request_retried", 103.0, attempt="3.1", outcome="rate_limited", attempt_number=1, delay_s=1.0),
        # 3-4 s: a 429'd attempt waits out its Retry-After -> rate-limited (2 free slots)
        _req("cooldown_started", 104.0, until=105.0, duration_s=1.0, reason="429"),
        # 4-5 s: the endpoint cools down -> rate-limited
        _req("cooldown_ended", 105.0),
        # 5-6 s: no ready work again
        _req("request_completed", 106.0, attempt="1.1", lease=1, outcome="success", latency_s=3.0, tokens=10),
        _req("request_completed", 106.0, attempt="2.1", lease=2, outcome="success", latency_s=3.0, tokens=5),
        {"kind": "job_completed", "ts": 106.0, "job": "j", "status": "completed"},
    ]


def test_idle_capacity_is_charged_to_the_first_cause_that_holds():
    timeline = build_timeline(scenario())
    ep = timeline.endpoints[KEY]
    assert timeline.end == pytest.approx(6.0)
    assert ep.idle_s() == pytest.approx(
        {"frontier_limited": 3.0, "no_ready_work": 5.0, "admission_blocked": 3.0, "rate_limited": 4.0}
    )
    assert sum(sum(timeline.idle_bins(KEY, c)) for c in IDLE_CAUSES) == pytest.approx(15.0)  # bins add up


def test_queued_tasks_of_the_endpoints_model_pool_count_as_admission_blocked():
    events = [
        *scenario()[:2],
        {"kind": "row_group_admitted", "ts": 100.0, "job": "j", "row_group": 0, "rows": 1, "in_flight": 1},
        {"kind": "row_group_admitted", "ts": 100.0, "job": "j", "row_group": 1, "rows": 1, "in_flight": 2},
        {"kind": "task_queued", "ts": 100.0, "job": "j", "group": "c", "pool": "model:a"},
        {"kind": "task_queued", "ts": 100.0, "job": "j", "group": "x", "pool": "cpu"},  # another pool: no effect
        {"kind": "task_admitted", "ts": 101.0, "job": "j", "group": "c", "pool": "model:a", "lease": 1},
        {"kind": "job_completed", "ts": 102.0, "job": "j", "status": "completed"},
    ]
    ep = build_timeline(events).endpoints[KEY]
    assert ep.idle_s()["admission_blocked"] == pytest.approx(3.0)
    assert ep.idle_s()["no_ready_work"] == pytest.approx(3.0)


def test_utilisation_and_ideal_bound_follow_the_series():
    timeline = build_timeline(scenario())
    ep = timeline.endpoints[KEY]
    assert ep.in_flight.integral(0.0, 6.0) == pytest.approx(9.0)
    assert timeline.utilisation(KEY) == pytest.approx(9.0 / 24.0)
    assert ep.requests == 2 and ep.mean_latency_s == pytest.approx(3.0) and ep.tokens == 15
    assert timeline.ideal_wall_s() == pytest.approx(2 * 3.0 / 4.0)
    assert ep.max_limit == 8 and ep.aliases == {"a"}
    centres, values = timeline.utilisation_series(KEY)
    assert len(centres) == timeline.bins and all(0.0 <= v <= 1.0 for v in values)


def test_series_integrates_resamples_and_steps():
    series = Series()
    series.set(0.0, 2)
    series.set(1.0, 4)
    series.set(1.0, 6)  # same time: the last value wins
    series.set(3.0, 6)  # no change: no new point
    assert series.t == [0.0, 1.0] and series.v == [2, 6]
    assert series.at(0.5) == 2 and series.at(2.0) == 6
    assert series.integral(0.0, 2.0) == pytest.approx(8.0)
    assert series.resample(0.0, 2.0, 2) == ([0.5, 1.5], [2.0, 6.0])
    assert series.steps(4.0) == ([0.0, 1.0, 4.0], [2, 6, 6])


def test_select_job_takes_the_last_run_of_an_appended_log():
    first = [{"kind": "job_started", "ts": 1.0, "job": "a"}, {"kind": "job_completed", "ts": 2.0, "job": "a"}]
    second = [{"kind": "job_started", "ts": 3.0, "job": "b"}, {"kind": "job_completed", "ts": 9.0, "job": "b"}]
    assert select_job(first + second) == second
    assert select_job(first + second, "a") == first
    with pytest.raises(ValueError, match="no events of job 'zz'"):
        select_job(first, "zz")


async def test_a_real_runs_timeline_accounts_for_every_request_and_ends_idle(sim, tmp_path):
    result = await run_with_events(sim.base_url, tmp_path, 200)
    timeline = build_timeline(select_job(read_jsonl(tmp_path / "events.jsonl")))
    ep = timeline.endpoints["sim/sim-small"]
    assert ep.requests == result.summary["requests"]["total"] == 600
    assert ep.in_flight.last == 0 and ep.queued.last == 0
    assert ep.in_flight.peak <= ep.limit.peak <= 16
    assert 0.0 < timeline.utilisation("sim/sim-small") <= 1.0
    assert timeline.ideal_wall_s() is not None and timeline.ideal_wall_s() < result.summary["wall_s"]
    capacity = ep.limit.integral(0.0, timeline.end)
    busy = capacity - sum(ep.idle_s().values())
    assert busy == pytest.approx(ep.in_flight.integral(0.0, timeline.end), rel=0.05)
    assert not timeline.frontier_target.empty and timeline.row_groups_in_flight.last == 0


def test_outages_are_paired_down_to_up_and_one_still_open_at_the_end_is_marked_unfinished():
    events = [
        *scenario()[:-1],
        _req("endpoint_down", 101.0, provider="p", url="http://h/v1", last_error="connection refused", failures=3),
        _req("endpoint_up", 102.5, down_for_s=1.5, probes=2),
        _req("endpoint_down", 105.0, provider="p", url="http://h/v1", last_error="timed out", failures=3),
        {"kind": "job_completed", "ts": 106.0, "job": "j", "status": "aborted"},
    ]
    outages = build_timeline(events).endpoints[KEY].outages
    assert [(o.start, o.end, o.probes, o.finished, o.last_error) for o in outages] == [
        (1.0, 2.5, 2, True, "connection refused"),
        (5.0, 6.0, None, False, "timed out"),
    ]
    slices = [e for e in build_trace(events)["traceEvents"] if e.get("cat") == "outage"]
    assert [(s["name"], s["ts"], s["dur"], s["args"].get("unfinished")) for s in slices] == [
        ("down", 1e6, 1.5e6, None),
        ("down", 5e6, 1e6, True),
    ]
    assert len({s["tid"] for s in slices}) == 1  # one track: the endpoint's outages lane


def test_the_traces_idle_slots_counter_integrates_to_the_timelines_idle_split():
    events = scenario()
    counters = [
        (e["ts"] / 1e6, e["args"])
        for e in build_trace(events)["traceEvents"]
        if e["ph"] == "C" and e["name"] == "idle slots"
    ]
    totals = dict.fromkeys(IDLE_CAUSES, 0.0)
    for (t, slots), (until, _) in zip(counters, [*counters[1:], (6.0, None)], strict=True):
        for cause, free in slots.items():
            totals[cause] += free * (until - t)
    assert totals == pytest.approx(build_timeline(events).endpoints[KEY].idle_s())
