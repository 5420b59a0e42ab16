"""`rowloom report` of a run whose folder is a `pyarrow.fs` URI (s3://…, gs://…): summary.json and events.jsonl
are read through the location and report.html is written beside them.

A local folder (a path or file://) goes through `observe.report.render_report`; this module only adds the
reading and writing a URI needs, and must not render anything itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from rowloom.engine.output_location import OutputLocation
from rowloom.engine.storage import SUMMARY
from rowloom.observe.report import ReportError, report_html
from rowloom.observe.sinks import read_jsonl

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
    if events is not None:
        rows = read_jsonl(events)
    else:
        raw = location.read_bytes(EVENTS)
        rows = None if raw is None else [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    html = report_html(summary, rows, job=job, name=location.path().rstrip("/").rpartition("/")[2])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(html)
        return str(output)
    location.write_bytes(REPORT, html.encode())
    return location.shown(REPORT)
