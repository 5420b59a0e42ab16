"""Events: every kind round-trips through JSON, ids correlate across layers, sinks never break a run."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import types
import typing
from pathlib import Path

from rowloom.concurrency.clock import ManualClock
from rowloom.engine.job import run_job
from rowloom.observe.events import Event, event_from_dict, event_types
from rowloom.observe.events.base import to_json_value
from rowloom.observe.events.request import RequestAdmitted, RequestCompleted
from rowloom.observe.events.scheduler import JobCompleted, TaskAdmitted
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.sinks import MemorySink

from .helpers import chain_config

ISSUE_KINDS = {
    "job_started",
    "job_completed",
    "task_queued",
    "task_admitted",
    "task_blocked",
    "task_released",
    "row_group_admitted",
    "row_group_checkpointed",
    "frontier_changed",
    "advisory_skip",
    "health_snapshot",
    "capacity_snapshot",
    "request_queued",
    "request_admitted",
    "request_rate_limited",
    "request_completed",
    "limit_changed",
    "cooldown_started",
    "cooldown_ended",
}


def _sample(annotation: object) -> object:
    """A non-default JSON value for a field of this type."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is dict or annotation is dict:
        return {"a": {"nested": [1, 2.5, "x", None, True]}}
    if origin is list or annotation is list:
        return ["p", "q"]
    return {str: "s-value", int: 7, float: 2.25, bool: True}[annotation]  # type: ignore[index]


def _build(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    values = {f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls) if f.name != "ts"}
    values.update(ts=123.5, job="job1", row_group=3, column="answer", task="3:answer:7", attempt="12.2")
    return cls(**values)


def test_every_issue_event_kind_is_registered():
    assert set(event_types()) >= ISSUE_KINDS


def test_every_event_type_serialises_and_round_trips_through_json():
    for kind, cls in event_types().items():
        event = _build(cls)
        data = event.to_dict()
        assert data["kind"] == kind
        text = json.dumps(data, allow_nan=False)  # plain JSON: no Python objects, no NaN
        back = event_from_dict(json.loads(text))
        assert back == event, kind
        assert type(back) is cls
        assert json.loads(event.to_json()) == data  # the JSONL sink's fast encoder agrees with to_dict


def test_unset_correlation_ids_are_left_out_and_read_back_as_none():
    event = JobCompleted(ts=1.0, status="completed")
    data = event.to_dict()
    assert not {"job", "row_group", "column", "task", "attempt"} & set(data)
    assert event_from_dict(data) == event


class _Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Point:
    x: int
    y: float


def test_diagnostics_are_normalised_to_json_types():
    raw = {
        "enum": _Colour.RED,
        "nan": math.nan,
        "inf": math.inf,
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "dataclass": _Point(1, 2.5),
        "path": Path("/tmp/x"),
        5: "int key",
    }
    value = to_json_value(raw)
    assert value == {
        "enum": "red",
        "nan": None,
        "inf": None,
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "dataclass": {"x": 1, "y": 2.5},
        "path": repr(Path("/tmp/x")),
        "5": "int key",
    }
    assert json.loads(json.dumps(value, allow_nan=False)) == value


def _json_only(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, list):
        return all(_json_only(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_only(v) for k, v in value.items())
    return False


async def test_events_of_a_real_run_carry_only_json_values(sim, tmp_path):
    sink = MemorySink()
    await run_job(chain_config(sim.base_url), 100, output=tmp_path, sink=sink)
    assert sink.events
    for event in sink.events:
        for f in dataclasses.fields(event):
            assert _json_only(getattr(event, f.name)), (event.kind, f.name, getattr(event, f.name))
        data = event.to_dict()
        assert json.loads(json.dumps(data, allow_nan=False)) == data


async def test_correlation_ids_link_a_request_attempt_to_its_task_column_and_row_group(sim, tmp_path):
    sink = MemorySink()
    await run_job(chain_config(sim.base_url), 200, output=tmp_path, sink=sink)
    tasks = {e.task: e for e in sink.of(TaskAdmitted)}
    completed = sink.of(RequestCompleted)
    assert len(completed) == 600
    jobs = {e.job for e in sink.events}
    assert len(jobs) == 1 and None not in jobs
    attempts = set()
    for done in completed:
        assert done.attempt is not None and done.task in tasks
        task = tasks[done.task]
        assert (done.column, done.row_group) == (task.column, task.row_group)
        assert done.group == task.column  # the request's fair-queue group is its column
        attempts.add(done.attempt)
    assert len(attempts) == len(completed)  # one attempt id per attempt
    # an admission straight through (no wait) runs in the attempt's own context
    for admitted in sink.of(RequestAdmitted):
        if admitted.wait_s == 0.0:
            assert admitted.task in tasks and admitted.column == tasks[admitted.task].column


async def test_capacity_snapshots_report_caps_limits_and_observed_maxima_at_start_and_end(sim, tmp_path):
    sink = MemorySink()
    await run_job(chain_config(sim.base_url), 100, output=tmp_path, sink=sink)
    snapshots = sink.of(CapacitySnapshot)
    assert next(s.reason for s in snapshots) == "job_started" and snapshots[-1].reason == "job_completed"
    start, end = snapshots[0].endpoints, snapshots[-1].endpoints
    assert set(start) == set(end) == {"sim/sim-small"}
    view = end["sim/sim-small"]
    assert view["max_limit"] == 16 and view["min_limit"] >= 1
    assert 1 <= view["limit"] <= 16 and view["observed_max_limit"] >= view["limit"]
    assert view["peak_in_flight"] >= 1 and view["in_flight"] == 0
    assert view["aliases"] == ["writer"]


async def test_a_capacity_snapshot_follows_every_health_snapshot(sim, tmp_path):
    from rowloom.engine.scheduler import Scheduler
    from rowloom.observe.events.scheduler import HealthSnapshot

    health_clock = ManualClock()
    ticks = 3

    class TickingSink(MemorySink):
        """Moves the health clock one interval at a request admission once the last tick's snapshot is out, so
        the periodic snapshots follow the clock, not how long the run happens to take."""

        def __init__(self) -> None:
            super().__init__()
            self.health = self.advanced = 0

        def emit(self, event: Event) -> None:
            super().emit(event)
            self.health += isinstance(event, HealthSnapshot)
            if isinstance(event, RequestAdmitted) and self.advanced < ticks and self.health == 1 + self.advanced:
                self.advanced += 1
                health_clock.advance(1.0)

    def manual_health(scheduler: Scheduler, stats: object) -> None:
        scheduler.health_interval_s = 1.0
        scheduler.health_clock = health_clock

    sink = TickingSink()
    await run_job(chain_config(sim.base_url), 200, output=tmp_path, sink=sink, on_start=manual_health)
    events = sink.events
    health = [i for i, e in enumerate(events) if isinstance(e, HealthSnapshot)]
    assert len(health) == 1 + ticks  # one at job start, then one per interval the health clock moved
    for i in health:
        assert isinstance(events[i + 1], CapacitySnapshot)
    assert [events[i + 1].reason for i in health] == ["job_started"] + ["health"] * ticks


class _Exploding:
    def __init__(self) -> None:
        self.calls = 0

    def emit(self, event: Event) -> None:
        self.calls += 1
        raise RuntimeError("disk on fire")

    def close(self) -> None:
        raise RuntimeError("still on fire")


async def test_a_raising_sink_is_logged_once_with_its_traceback_and_the_run_completes(sim, tmp_path, caplog):
    exploding = _Exploding()
    with caplog.at_level(logging.ERROR, logger="rowloom.observe"):
        result = await run_job(chain_config(sim.base_url), 100, output=tmp_path, sink=exploding)
    assert result.summary["status"] == "completed" and result.summary["records_written"] == 100
    assert exploding.calls == 1  # disabled after its first failure
    records = [r for r in caplog.records if r.name == "rowloom.observe"]
    assert len(records) == 1
    assert "_Exploding" in records[0].getMessage() and records[0].exc_info is not None
    assert "disk on fire" in caplog.text
