"""The Perfetto export: a real run's events become a Chrome trace-event file with the documented tracks."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import jsonschema
from typer.testing import CliRunner

from rowloom.interface.cli import app
from rowloom.observe.perfetto import build_trace

from .helpers import run_with_events

_COMMON = {"ph": {"type": "string"}, "name": {"type": "string"}, "pid": {"type": "integer"}}
_TS = {"type": "number", "minimum": 0}
TRACE_SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "traceEvents": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["ph", "name", "pid"],
                "oneOf": [
                    {  # complete slices
                        "properties": {
                            **_COMMON,
                            "ph": {"const": "X"},
                            "tid": {"type": "integer"},
                            "ts": _TS,
                            "dur": {"type": "number", "minimum": 0},
                            "cat": {"type": "string"},
                            "args": {"type": "object"},
                        },
                        "required": ["tid", "ts", "dur"],
                    },
                    {  # counters: every arg is a number
                        "properties": {
                            **_COMMON,
                            "ph": {"const": "C"},
                            "ts": _TS,
                            "args": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number"}},
                        },
                        "required": ["ts", "args"],
                    },
                    {  # instants
                        "properties": {
                            **_COMMON,
                            "ph": {"const": "i"},
                            "ts": _TS,
                            "s": {"enum": ["g", "p", "t"]},
                            "tid": {"type": "integer"},
                        },
                        "required": ["ts", "tid"],
                    },
                    {  # metadata: names and sort order of processes and threads
                        "properties": {
                            **_COMMON,
                            "ph": {"const": "M"},
                            "name": {
                                "enum": ["process_name", "thread_name", "process_sort_index", "thread_sort_index"]
                            },
                            "args": {"type": "object", "minProperties": 1},
                        },
                        "required": ["args"],
                    },
                ],
            },
        },
    },
}


async def test_perfetto_export_of_a_real_run_has_endpoint_pool_row_group_and_counter_tracks(sim, tmp_path):
    await run_with_events(sim.base_url, tmp_path, 200)
    result = CliRunner().invoke(app, ["trace", str(tmp_path / "events.jsonl"), "-o", str(tmp_path / "trace.json")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "trace.json") as fh:
        trace = json.load(fh)
    jsonschema.validate(trace, TRACE_SCHEMA)
    events = trace["traceEvents"]

    processes = {e["args"]["name"]: e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"job", "row groups", "endpoint sim/sim-small", "task pool model:writer", "task pool cpu"} <= set(processes)
    threads = defaultdict(set)
    for e in events:
        if e["ph"] == "M" and e["name"] == "thread_name":
            threads[e["pid"]].add(e["args"]["name"])
    assert {"row group 0", "row group 1"} <= threads[processes["row groups"]]
    endpoint = processes["endpoint sim/sim-small"]
    assert "leases #0" in threads[endpoint]

    slices = [e for e in events if e["ph"] == "X"]
    leases = [e for e in slices if e["pid"] == endpoint and e["cat"] == "request"]
    assert len(leases) == 600  # every attempt's lease, admitted -> completed
    assert all(e["args"]["outcome"] == "success" and e["args"]["task"] for e in leases)
    assert {e["name"] for e in leases} == {"question", "answer", "review"}
    waits = [e for e in slices if e["pid"] == endpoint and e["cat"] == "request_wait"]
    assert all(e["args"].get("attempt") for e in waits)
    task_leases = [e for e in slices if e["pid"] == processes["task pool model:writer"]]
    assert len(task_leases) == 600
    groups = [e for e in slices if e["pid"] == processes["row groups"]]
    assert sorted(e["name"] for e in groups) == ["row group 0", "row group 1"]
    assert all(e["args"]["rows"] == 100 for e in groups)

    counters = {(e["pid"], e["name"]) for e in events if e["ph"] == "C"}
    assert {(endpoint, "adaptive limit"), (endpoint, "requests in flight"), (endpoint, "queued requests")} <= counters
    assert (processes["task pool model:writer"], "tasks queued") in counters
    assert (processes["job"], "frontier target") in counters
    in_flight = [e["args"]["value"] for e in events if e["ph"] == "C" and e["name"] == "requests in flight"]
    assert max(in_flight) <= 16 and in_flight[-1] == 0

    # slices on one track never overlap, so every track nests (the lanes are real tracks, not a pile-up)
    by_track = defaultdict(list)
    for e in slices:
        by_track[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_track.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-3


def test_slices_still_open_at_the_end_are_closed_and_marked_unfinished():
    events = [
        {"kind": "job_started", "ts": 10.0, "job": "j", "row_groups": 1, "capacities": {}},
        {"kind": "row_group_admitted", "ts": 10.1, "job": "j", "row_group": 0, "rows": 5, "in_flight": 1},
        {
            "kind": "request_admitted",
            "ts": 10.2,
            "job": "j",
            "attempt": "1.1",
            "key": "p/m",
            "alias": "a",
            "group": "c",
            "lease": 1,
            "wait_s": 0.0,
            "in_flight": 1,
            "limit": 4,
        },
        {"kind": "job_completed", "ts": 10.5, "job": "j", "status": "interrupted"},
    ]
    trace = build_trace(events)
    jsonschema.validate(trace, TRACE_SCHEMA)
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["cat"] for e in slices} == {"request", "row_group"}
    assert all(e["args"]["unfinished"] for e in slices)
    lease = next(e for e in slices if e["cat"] == "request")
    assert lease["ts"] == 200_000 and lease["dur"] == 300_000  # µs from job start


def test_trace_keeps_the_last_job_of_a_log_with_several_runs_unless_told():
    def run(job: str, t: float) -> list[dict]:
        return [
            {"kind": "job_started", "ts": t, "job": job, "row_groups": 1},
            {"kind": "row_group_admitted", "ts": t + 1, "job": job, "row_group": 0, "rows": 1, "in_flight": 1},
            {"kind": "row_group_checkpointed", "ts": t + 2, "job": job, "row_group": 0, "rows": 1, "dropped": 0},
        ]

    events = run("first", 0.0) + run("second", 100.0)
    assert build_trace(events)["otherData"]["job"] == "second"
    assert build_trace(events, job="first")["otherData"]["job"] == "first"
