"""`rowloom report` of a run whose folder is a `pyarrow.fs` URI (s3://…, gs://…): summary.json and events.jsonl
are read through the location and report.html is written beside them.

A local folder (a path or file://) goes through `observe.report.render_report`; this module only adds the
reading and writing a URI needs, and must not render anything itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rowloom.engine.output_location import OutputLocation
from rowloom.engine.storage import SUMMARY
from rowloom.observe.event_log import file_lines, stream_lines
from rowloom.observe.report import ReportError, report_html

EVENTS = "events.jsonl"
REPORT = "report.html"


def report_at(location: OutputLocation, *, events: Path | None, output: Path | None, job: str | None) -> str:
    """Write the report of the run in `location` (default: its report.html); returns where, as a user reads it."""
    data = location.read_bytes(SUMMARY)
    if data is None:
        raise ReportError(f"{location.shown(SUMMARY)} not found: is {location.shown()} the --output folder of a run?")
    try:
        summary = json.loads(data)
    except ValueError as exc:
        raise ReportError(f"{location.shown(SUMMARY)} is not a run summary (JSON): {exc}") from None
    lines = file_lines(events) if events is not None else _stored_lines(location)
    html = report_html(summary, lines, job=job, name=location.path().rstrip("/").rpartition("/")[2])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(html)
        return str(output)
    location.write_bytes(REPORT, html.encode())
    return location.shown(REPORT)


def _stored_lines(location: OutputLocation) -> Callable[[], Any] | None:
    """A way to read the stored events log's lines again, streamed from the store (never read whole); None when the
    run recorded no events there."""
    if not location.is_file(EVENTS):
        return None

    @contextmanager
    def lines() -> Iterator[Iterator[bytes]]:
        with location.filesystem.open_input_stream(location.path(EVENTS)) as stream:
            yield stream_lines(stream)

    return lines
