"""The JSONL sink: batched encoding gives exactly `to_dict()` per line, whatever the diagnostics hold; the fan-out
guards each sink alone."""

from __future__ import annotations

import enum
import json
import logging
import math

import orjson

from rowloom.observe.events import event_from_dict
from rowloom.observe.events.request import LimitChanged
from rowloom.observe.events.scheduler import HealthSnapshot, JobStarted, TaskQueued
from rowloom.observe.sinks import FanoutSink, GuardedSink, JsonlSink, MemorySink, encode_jsonl, read_jsonl


class _Mode(enum.Enum):
    FAST = "fast"


def awkward_events() -> list:
    return [
        TaskQueued(ts=1.0, job="j", row_group=0, column="c", task="0:c", group="c", pool="cpu"),
        HealthSnapshot(
            ts=2.0,
            pools={"cpu": {"capacity": 2, "queued": 0, "ratio": math.nan, "modes": {_Mode.FAST}}},
            endpoints={7: (1, math.inf)},  # a non-string key, a tuple, an infinity
        ),
        # a nested list of objects whose first key is "kind": the batch encoder must not cut inside it
        JobStarted(ts=3.0, capacities={"x": [{"kind": "a", "n": 1}, {"kind": "b", "n": 2}]}),
        JobStarted(ts=4.0, capacities={"huge": 2**70}),  # beyond 64 bits: orjson cannot, json can
        LimitChanged(ts=5.0, key="p/m", old=4, new=5, reason='slow start "quoted" },{"kind":'),
    ]


def test_each_line_is_exactly_to_dict_of_its_event():
    events = awkward_events()
    lines = encode_jsonl(events).splitlines()
    assert len(lines) == len(events)
    for line, event in zip(lines, events, strict=True):
        assert json.loads(line) == event.to_dict()
        assert orjson.loads(event.to_json()) == event.to_dict()


def test_batches_without_awkward_values_are_cut_into_the_same_lines():
    events = [TaskQueued(ts=float(i), job="j", task=f"0:c:{i}", group="c", pool="cpu") for i in range(50)]
    assert encode_jsonl(events) == b"".join(e.to_json() + b"\n" for e in events)


def test_jsonl_sink_buffers_then_writes_lines_that_read_back_as_events(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, buffer_events=3)
    events = awkward_events()
    sink.emit(events[0])
    assert path.read_bytes() == b""  # buffered, nothing written yet
    for event in events[1:]:
        sink.emit(event)
    sink.close()
    back = read_jsonl(path)
    assert back == [e.to_dict() for e in events]
    assert event_from_dict(back[0]) == events[0]


def test_jsonl_sink_writes_full_batches_on_its_own_thread_and_reports_a_failed_write(tmp_path):
    import threading

    import pytest

    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, buffer_events=2)
    writers: list[str] = []
    failing = threading.Event()

    class Recording:  # the sink's file, recording which thread writes and failing on demand
        def __init__(self, file):
            self.file = file
            self.closed = False

        def write(self, data: bytes) -> int:
            writers.append(threading.current_thread().name)
            if failing.is_set():
                raise OSError(28, "No space left on device")
            return self.file.write(data)

        def flush(self) -> None:
            self.file.flush()

        def close(self) -> None:
            self.file.close()

    sink._file = Recording(sink._file)
    events = [TaskQueued(ts=float(i), job="j", task=f"0:c:{i}", group="c", pool="cpu") for i in range(5)]
    for event in events:
        sink.emit(event)
    sink.flush()  # the two full batches and the odd one out are all on the file when flush returns
    assert [e["ts"] for e in read_jsonl(path)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert writers and set(writers) == {"rowloom-events"}  # never the emitting thread

    failing.set()
    sink.emit(events[0])
    sink.emit(events[1])  # a full batch: handed to the writer, whose write fails
    with pytest.raises(OSError, match="No space left"):
        sink.flush()
    with pytest.raises(OSError):
        sink.close()
    assert len(read_jsonl(path)) == 5  # what was written stays; nothing half-written follows it


class _Failing:
    """A sink that raises on its `fail_at`-th event (from 1), and on close when `close_fails`."""

    def __init__(self, fail_at: int, close_fails: bool = False):
        self.fail_at, self.close_fails = fail_at, close_fails
        self.seen = 0
        self.closed = False

    def emit(self, event) -> None:
        self.seen += 1
        if self.seen == self.fail_at:
            raise RuntimeError("sink broke")

    def close(self) -> None:
        self.closed = True
        if self.close_fails:
            raise RuntimeError("close broke")


def test_a_fanout_disables_only_the_sink_that_fails_and_logs_it_once(caplog):
    ok, breaks, nested_ok, nested_breaks = MemorySink(), _Failing(2), MemorySink(), _Failing(1, close_fails=True)
    already = GuardedSink(_Failing(1), "already-failed")
    already.emit(awkward_events()[0])  # fails before the fan-out is built: stays disabled in it
    inner = FanoutSink([nested_ok, GuardedSink(nested_breaks, "nested")])
    sink = FanoutSink([ok, breaks, inner, already])
    events = awkward_events()
    with caplog.at_level(logging.ERROR, logger="rowloom.observe"):
        for event in events:
            sink.emit(event)
        sink.close()
    assert ok.events == events and nested_ok.events == events  # the others saw every event
    assert breaks.seen == 2 and nested_breaks.seen == 1 and already.sink.seen == 1  # none asked again
    assert all(s.closed for s in (breaks, nested_breaks, already.sink))  # every sink is closed, failed or not
    failures = [r.getMessage() for r in caplog.records]
    assert failures == [
        "event sink already-failed failed and is disabled for the rest of the run",  # by its guard, before
        "event sink nested failed and is disabled for the rest of the run",
        "event sink _Failing failed and is disabled for the rest of the run",
    ]  # once each, by name; a failed sink's failing close is not logged again
    assert all(r.exc_info for r in caplog.records)  # with its traceback


class _Picky(MemorySink):
    """Takes only limit changes and health snapshots, and fails on its second."""

    kinds = frozenset({"limit_changed", "health_snapshot"})

    def emit(self, event) -> None:
        assert event.kind in self.kinds, f"sent an event of a kind it does not take: {event.kind}"
        super().emit(event)
        if len(self.events) == 2:
            raise RuntimeError("picky broke")


def test_a_fanout_sends_a_sink_with_kinds_only_those_and_the_others_everything():
    everything, picky = MemorySink(), _Picky()
    sink = FanoutSink([everything, picky])
    events = awkward_events()
    for event in events + events:  # the second round after picky failed: the routes forget it
        sink.emit(event)
    assert everything.events == events + events
    assert [e.kind for e in picky.events] == ["health_snapshot", "limit_changed"]  # in order, then disabled


def test_the_run_sinks_kinds_are_event_kinds_and_cover_what_they_read():
    from rowloom.models.ledger import TokenLedger
    from rowloom.observe.events import event_types
    from rowloom.observe.stats import RequestStats

    known = set(event_types())
    for sink in (RequestStats, TokenLedger):
        assert sink.kinds <= known, f"{sink.__name__} names kinds no event has: {sink.kinds - known}"
    assert {"request_admitted", "request_completed", "limit_changed", "endpoint_down"} <= RequestStats.kinds
    assert {"request_completed", "row_group_checkpointed"} <= TokenLedger.kinds
