"""Reading an event log as a stream: one job's events, one at a time, in time order.

Owns the reading only (lines to plain event dicts, choosing a job, ordering by `ts`), so a reader of a log of any
size holds a bounded window of events, never the whole log. Knows nothing of what the events mean.

A single-process log is written in emission order, which is time order. A Ray run's log is not: each worker's
events reach the driver in batches, one per checkpoint, between the driver's own. Events are therefore released
through a reorder window; when one arrives later than the window allows, `OutOfOrder` is raised and `replay`
builds again from an on-disk sort of the log (chunks sorted in memory, merged from temporary files).
"""

from __future__ import annotations

import heapq
import itertools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from rowloom.observe.sources import belongs_to

T = TypeVar("T")

#: Events held back to put a slightly disordered log in time order (about 1 kB each as dicts).
REORDER_WINDOW = 4_096
#: Lines sorted in memory per chunk when a log must be sorted on disk (about 250 bytes each).
SORT_CHUNK = 50_000
_JOB_STARTED = b'"job_started"'


class OutOfOrder(ValueError):
    """An event came later in the log than the reorder window can put right."""


# ------------------------------------------------------------------ one job of a list (logs held in memory)


def job_ids(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of the jobs that started in an event log, in order (a log may hold several appended runs)."""
    return [str(e["job"]) for e in events if e.get("kind") == "job_started" and e.get("job")]


def select_job(events: Sequence[Mapping[str, Any]], job: str | None = None) -> list[Mapping[str, Any]]:
    """The events of one job: `job`, or the last job that started in the log; a log without job ids is kept whole."""
    if job is None:
        started = job_ids(events)
        if not started:
            return list(events)
        job = started[-1]
    chosen = [e for e in events if belongs_to(e, job)]  # with its workers' events in a Ray run
    if not chosen:
        raise ValueError(f"no events of job {job!r} in this log (jobs: {', '.join(job_ids(events)) or 'none'})")
    return chosen


# ------------------------------------------------------------------ one job of a file, streamed


def read_events(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Each non-blank line as an event dict, one at a time (a line that is not JSON raises ValueError)."""
    for line in lines:
        if line.strip():
            yield orjson.loads(line)


@contextmanager
def _open_local(path: Path) -> Iterator[IO[bytes]]:
    with open(path, "rb") as fh:
        yield fh


def file_lines(path: str | Path) -> Callable[[], Any]:
    """A way to read a local log's lines again (each call opens it afresh), for `replay`."""
    return lambda: _open_local(Path(path))


def stream_lines(stream: Any, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a binary stream that only reads (a `pyarrow.fs` input stream has no readline), read in chunks."""
    rest = b""
    while chunk := stream.read(chunk_bytes):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _chosen_job(lines: Callable[[], Any], job: str | None) -> str | None:
    """`job`, checked to be in the log, or the last that started; None for a log without job ids (kept whole).
    Only the lines of JobStarted events are parsed."""
    with lines() as fh:
        started = [str(e["job"]) for e in read_events(line for line in fh if _JOB_STARTED in line) if e.get("job")]
    if job is None:
        return started[-1] if started else None
    if job not in started:
        with lines() as fh:
            if not any(belongs_to(e, job) for e in read_events(fh)):
                raise ValueError(f"no events of job {job!r} in this log (jobs: {', '.join(started) or 'none'})")
    return job


def _of_job(events: Iterable[dict[str, Any]], job: str | None) -> Iterator[dict[str, Any]]:
    worker = f"{job}:"
    for event in events:
        source = event.get("job")
        if isinstance(event.get("ts"), int | float) and (
            job is None or source == job or str(source).startswith(worker)
        ):
            yield event


def in_time_order(events: Iterable[dict[str, Any]], window: int | None = None) -> Iterator[dict[str, Any]]:
    """`events` ordered by `ts` (ties keep their order), holding at most `window` of them; raises `OutOfOrder` for
    an event earlier than one already released."""
    window = REORDER_WINDOW if window is None else window
    held: list[tuple[float, int, dict[str, Any]]] = []
    released = float("-inf")
    for seq, event in enumerate(events):
        ts = float(event["ts"])
        if ts < released:
            raise OutOfOrder(f"an event at ts {ts} comes more than {window} events after one at {released}")
        if len(held) < window:
            heapq.heappush(held, (ts, seq, event))
            continue
        released, _, first = heapq.heappushpop(held, (ts, seq, event))
        yield first
    while held:
        yield heapq.heappop(held)[2]


def sorted_on_disk(lines: Iterable[bytes], chunk: int | None = None) -> Iterator[dict[str, Any]]:
    """Every event of `lines` in `ts` order (ties in log order), holding one chunk of lines in memory: each chunk
    is sorted and written to a temporary file, and the files are merged."""
    chunk = SORT_CHUNK if chunk is None else chunk
    with tempfile.TemporaryDirectory(prefix="rowloom-events-") as folder:
        files: list[Path] = []
        seq = itertools.count()
        pending = ((orjson.loads(line)["ts"], next(seq), line.strip()) for line in lines if line.strip())
        while batch := sorted(itertools.islice(pending, chunk)):
            path = Path(folder) / f"{len(files)}.jsonl"
            with open(path, "wb") as out:
                for ts, n, line in batch:
                    out.write(orjson.dumps([ts, n]) + b" " + line + b"\n")
            files.append(path)
        handles = [open(path, "rb") for path in files]  # noqa: SIM115 - closed below, many at once
        try:
            keyed = [((tuple(orjson.loads(row.partition(b" ")[0])), row) for row in fh) for fh in handles]
            for _, row in heapq.merge(*keyed, key=lambda pair: pair[0]):
                yield orjson.loads(row.partition(b" ")[2])
        finally:
            for fh in handles:
                fh.close()


def replay(lines: Callable[[], Any], build: Callable[[Iterable[dict[str, Any]]], T], job: str | None = None) -> T:
    """`build(events)` over one job of a log (`job`, or the last that started), its events streamed in time order.

    `lines()` opens the log's lines afresh (a context manager; see `file_lines`): the log is read once for its job
    ids and once for the events, or, when it is out of order beyond the reorder window, once more sorted on disk.
    """
    chosen = _chosen_job(lines, job)
    try:
        with lines() as fh:
            return build(in_time_order(_of_job(read_events(fh), chosen)))
    except OutOfOrder:
        with lines() as fh:
            return build(_of_job(sorted_on_disk(fh), chosen))
