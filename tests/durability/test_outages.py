"""Provider outages end to end over real sockets: a server restart mid-run is ridden out with every row (and shows in
the summary, the trace and the report); an endpoint gone for good stops the run after `circuit_breaker_s` with the
rows written kept, and the same command resumes once it is back; a wrong port stops within the start-up grace with
a message that says what happened and what to check."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.perfetto import build_trace
from rowloom.observe.report import render_report
from rowloom.observe.sinks import JsonlSink, read_jsonl

from .helpers import chain_dict, listed_table, read_manifest, rowloom, run_cli, write_yaml

# Slow enough that a run of a few hundred records is still going when the server goes away.
SIM = {"latency_s": 0.03, "capacity": 32, "models": ("sim-small",)}
# Probes at most 1 s apart, so the run notices the server's return quickly.
FAST_PROBES = {"probe_backoff_s": 0.2, "probe_backoff_max_s": 1.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


async def test_a_server_restart_mid_run_loses_no_row_and_is_reported_as_an_outage(tmp_path):
    port, n = free_port(), 300
    data = chain_dict(f"http://127.0.0.1:{port}/v1", row_group_size=50, seed=5, request_admission=FAST_PROBES)
    config = DatasetConfig.from_dict(data)
    out, events = tmp_path / "out", tmp_path / "out" / "events.jsonl"
    first = SimulatorProcess(SimulatorConfig(**SIM), port=port).start()
    second = SimulatorProcess(SimulatorConfig(**SIM), port=port)

    async def restart() -> None:  # the provider's process restarts: connections reset, then refused for ~3 s
        await asyncio.sleep(1.0)
        await asyncio.to_thread(first.stop)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(second.start)

    restarter = asyncio.create_task(restart())
    try:
        result = await run_job(config, n, output=out, sink=JsonlSink(events))
        await restarter
    finally:
        restarter.cancel()
        first.stop()
        second.stop()
    summary = result.summary
    assert summary["status"] == "completed", summary["message"]
    assert summary["records_written"] == n and summary["rows_dropped"] == 0, summary["rows_dropped_by_reason"]
    assert listed_table(out).num_rows == n
    by_outcome = summary["requests"]["by_outcome"]
    assert by_outcome.get("connection_error", 0) > 0, by_outcome  # the outage did happen while the run went on
    endpoint = summary["endpoints"]["sim/sim-small"]
    assert endpoint["outages"] >= 1 and 1.5 <= endpoint["down_s"] <= 15.0, endpoint

    log = read_jsonl(events)
    down = [e for e in log if e["kind"] == "endpoint_down"]
    up = [e for e in log if e["kind"] == "endpoint_up"]
    assert down and len(up) == len(down)
    assert down[0]["url"] == f"http://127.0.0.1:{port}/v1" and down[0]["provider"] == "sim"
    trace = build_trace(log)["traceEvents"]
    outages = [e for e in trace if e.get("ph") == "X" and e.get("cat") == "outage"]
    assert len(outages) == len(down) and all(e["name"] == "down" and e["dur"] > 0 for e in outages)
    report = render_report(out).read_text()
    assert "id='outages'" in report and "sim/sim-small" in report and "No endpoint was down" not in report


def test_an_endpoint_gone_for_good_stops_the_run_keeping_its_rows_and_the_same_command_resumes(tmp_path):
    port, n = free_port(), 200
    admission = {"circuit_breaker_s": 2.0, **FAST_PROBES}
    base_url = f"http://127.0.0.1:{port}/v1"
    config = write_yaml(
        tmp_path / "chain.yaml", chain_dict(base_url, row_group_size=20, seed=9, request_admission=admission)
    )
    out = tmp_path / "out"
    command = rowloom("run", str(config), "-n", str(n), "-o", str(out), "-q")
    with SimulatorProcess(SimulatorConfig(**SIM), port=port) as sim:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            manifest = read_manifest(out)
            if manifest and sum(g["rows"] for g in manifest["row_groups"]) >= 40:
                break
            time.sleep(0.02)
        sim.stop()  # gone for good (for this run)
        stopped_at = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert time.monotonic() - stopped_at < 20
    message = one_line(stderr)
    assert f"endpoint 'sim' ({base_url})" in message and "no successful request for" in message, message
    assert "connection" in message and "Run the same command again to resume" in message, message
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["rows_dropped"] == 0, summary
    kept = listed_table(out).num_rows
    assert kept >= 40 and kept == summary["records_written"]

    with SimulatorProcess(SimulatorConfig(**SIM), port=port):  # the endpoint is back
        done = run_cli("run", str(config), "-n", str(n), "-o", str(out), "-q", timeout=120)
    assert done.returncode == 0, done.stderr
    table = listed_table(out)
    assert table.num_rows == n and len(set(table.column("row_id").to_pylist())) == n
    assert json.loads((out / "summary.json").read_text())["records_resumed"] == kept


def test_a_wrong_port_stops_within_the_start_up_grace_saying_what_to_check(tmp_path):
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    admission = {"startup_grace_s": 1.5, **FAST_PROBES}
    config = write_yaml(tmp_path / "chain.yaml", chain_dict(base_url, request_admission=admission))
    started = time.monotonic()
    done = run_cli("run", str(config), "-n", "50", "-o", str(tmp_path / "out"), "-q", timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    message = one_line(done.stderr)
    assert f"cannot reach endpoint 'sim' at {base_url}" in message, message
    assert "connection refused" in message and "(no successful request in " in message, message
    assert "Is the server running, and is the port in base_url right?" in message, message
    assert "Traceback" not in done.stderr and "q:connection_error" not in message
    assert elapsed < 15, elapsed  # the grace plus start-up, not a circuit breaker's 300 s
    summary = json.loads((Path(tmp_path) / "out" / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["rows_dropped"] == 0
