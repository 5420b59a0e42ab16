"""Where events go: memory (tests), a buffered JSONL file, and a guarded fan-out.

A sink must never break a run: `FanoutSink` (and `GuardedSink`, for one sink alone) logs a failing sink once,
with its traceback, and disables it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

import orjson

from rowloom.observe.events.base import Event, encode_json

log = logging.getLogger("rowloom.observe")


class EventSink(Protocol):
    """Receives events; `close` flushes whatever is buffered.

    A sink that takes only some kinds of event may say which in a `kinds` attribute (a frozenset of
    `Event.kind`s): a `FanoutSink` then sends it only those. Without one it is sent every event."""

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Drops every event (the default when nobody listens)."""

    def emit(self, event: Event) -> None:
        return None

    def close(self) -> None:
        return None


class MemorySink:
    """Keeps every event in a list, for tests and in-process metrics."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None

    def of(self, *types: type[Event]) -> list[Event]:
        """The recorded events that are instances of any of `types`."""
        return [e for e in self.events if isinstance(e, types)]


class JsonlSink:
    """Appends one JSON object per line. Emitting only keeps the (immutable) event; each full batch is encoded in
    one orjson call and its bytes go to one writer thread, so the event loop never waits on the disk. (Encoding
    stays here: in a thread it would hold the interpreter lock just as long, at moments the loop cannot choose,
    which made the client's measured round trips noisier.)

    `flush` returns once everything emitted before it is written; `close` flushes and stops the writer. A write
    that fails is raised by the next `emit` or `flush` (a `GuardedSink` then disables the sink).
    """

    def __init__(self, path: str | Path, buffer_events: int = 1024):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._buffer: list[Event] = []
        self._limit = buffer_events
        self._batches: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._done = threading.Condition()
        self._submitted = self._written = 0  # batches handed to the writer, and batches it finished
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # emit may come from threads other than the loop's

    def emit(self, event: Event) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self._limit:
            self._submit()

    def flush(self) -> None:
        """Write everything emitted so far and wait until it is on the file."""
        submitted = self._submit()
        with self._done:
            self._done.wait_for(lambda: self._written >= submitted or self._error is not None)
        self._raise()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._batches.put(None)
                self._writer.join()
            self._file.close()

    def _submit(self) -> int:
        self._raise()
        with self._lock:
            batch, self._buffer = self._buffer, []
            if batch:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write, name="rowloom-events", daemon=True)
                    self._writer.start()
                self._submitted += 1
                self._batches.put(encode_jsonl(batch))
            return self._submitted

    def _write(self) -> None:
        while (data := self._batches.get()) is not None:
            try:
                if self._error is None:
                    self._file.write(data)
                    self._file.flush()
            except BaseException as exc:  # kept for the emitting side: this thread has nobody to tell
                self._error = exc
            with self._done:
                self._written += 1
                self._done.notify_all()

    def _raise(self) -> None:
        if self._error is not None:  # sticky: nothing more is written after a failed write
            raise self._error


class GuardedSink:
    """Wraps a sink: the first exception it raises is logged with its traceback and the sink is disabled."""

    def __init__(self, sink: EventSink, name: str | None = None):
        self.sink = sink
        self.name = name or type(sink).__name__
        self.failed = False

    def emit(self, event: Event) -> None:
        if self.failed:
            return
        try:
            self.sink.emit(event)
        except Exception:
            self.failed = True
            log.exception("event sink %s failed and is disabled for the rest of the run", self.name)

    def close(self) -> None:
        try:
            self.sink.close()
        except Exception:
            if not self.failed:
                log.exception("event sink %s failed while closing", self.name)
            self.failed = True


class FanoutSink:
    """Sends each event to several sinks, each guarded as `GuardedSink` guards one: the first exception a sink
    raises is logged and that sink alone is disabled, so no failure reaches the others or the run.

    Every event of a run passes through here, several per request: the guard is written inline rather than as a
    `GuardedSink` per sink (a call per sink per event fewer), a fan-out or a guarded sink given among the sinks is
    unwrapped into this one's list (a sink that failed there stays disabled), and an event goes only to the sinks
    whose `kinds` (see `EventSink`) take it: the sinks for each kind are worked out once.
    """

    def __init__(self, sinks: Iterable[EventSink]):
        named: list[tuple[EventSink, str, bool]] = []  # each sink, its name for a failure's log line, live
        for sink in sinks:
            if isinstance(sink, FanoutSink):
                named += [(part, sink._names[id(part)], part in sink._live) for part in sink.sinks]
            elif isinstance(sink, GuardedSink):
                named.append((sink.sink, sink.name, not sink.failed))
            else:
                named.append((sink, type(sink).__name__, True))
        self.sinks = [part for part, _, _ in named]
        self._names = {id(part): name for part, name, _ in named}
        self._live = [part for part, _, live in named if live]  # the sinks that have not failed
        self._routes: dict[str, list[EventSink]] = {}  # event kind -> the live sinks that take it

    def emit(self, event: Event) -> None:
        kind = event.kind
        sinks = self._routes.get(kind)
        if sinks is None:
            sinks = self._routes[kind] = [s for s in self._live if kind in getattr(s, "kinds", (kind,))]
        for sink in sinks:
            try:
                sink.emit(event)
            except Exception:
                self._failed(sink, "failed and is disabled for the rest of the run")

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                if sink in self._live:
                    self._failed(sink, "failed while closing")

    def _failed(self, sink: EventSink, what: str) -> None:
        self._live = [s for s in self._live if s is not sink]
        self._routes.clear()
        log.exception("event sink %s %s", self._names[id(sink)], what)


def guarded(sink: EventSink, name: str | None = None) -> EventSink:
    """`sink` itself when its emits are guarded already (a `GuardedSink`, a `FanoutSink`), else wrapped in one."""
    return sink if isinstance(sink, GuardedSink | FanoutSink) else GuardedSink(sink, name)


_SEPARATOR = b'},{"kind":'


def encode_jsonl(events: list[Event]) -> bytes:
    """Events as JSON lines (each line is `event.to_json()`), encoded in one orjson call for the whole batch.

    The batch is encoded as one array and cut between its elements: every element starts with `{"kind":`, which
    no string can contain unescaped. A nested object that happens to start with a "kind" key would add a cut, so
    the number of pieces is checked and such a batch is encoded event by event instead.
    """
    if not events:
        return b""
    blob = encode_json([e.to_record() for e in events])
    pieces = blob[1:-1].split(_SEPARATOR)
    if len(pieces) != len(events):
        return b"\n".join([e.to_json() for e in events]) + b"\n"
    return b'}\n{"kind":'.join(pieces) + b"\n"


def read_jsonl(path: str | Path) -> list[dict]:
    """Read back an events file written by `JsonlSink` as plain dicts."""
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]
