"""The JSONL sink: batched encoding gives exactly `to_dict()` per line, whatever the diagnostics hold."""

from __future__ import annotations

import enum
import json
import math

import orjson

from rowloom.observe.events import event_from_dict
from rowloom.observe.events.request import LimitChanged
from rowloom.observe.events.scheduler import HealthSnapshot, JobStarted, TaskQueued
from rowloom.observe.sinks import JsonlSink, encode_jsonl, read_jsonl


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
