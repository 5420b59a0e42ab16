"""Issue 14's scenario: the provider's process goes away mid-run and comes back on the same port.

A 600-record run of the chain example against a simulator process (latency 0.2 s); 3 s in the process is stopped
(in-flight connections reset, new ones refused), `--down-s` later a new one starts on the same port. Prints what
the run did: its status, rows written and dropped, failed attempts and when, the outages it saw.

With `--down-s inf` the endpoint stays gone: the run must stop after `--breaker-s` (request_admission's
`circuit_breaker_s`) keeping every row written; then a new simulator starts and the same job runs again, which
must resume to every record.

    python benchmarks/outage_restart.py [--records 600] [--down-s 20] [--breaker-s 300]
    python benchmarks/outage_restart.py --down-s inf --breaker-s 30
    python benchmarks/outage_restart.py --down-s 0      # no outage: the wall the others are compared with
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

import yaml

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.errors import RowloomError
from rowloom.observe.sinks import JsonlSink, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SIM = {"latency_s": 0.2, "capacity": 64, "models": ("sim-small",)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def scenario(records: int, down_s: float, breaker_s: float, start_s: float = 3.0) -> dict:
    port = free_port()
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = f"http://127.0.0.1:{port}/v1"
    data["run"].update(row_group_size=50, seed=1, request_admission={"circuit_breaker_s": breaker_s})
    config = DatasetConfig.from_dict(data)
    folder = Path(tempfile.mkdtemp(prefix="rowloom-outage-"))
    first = SimulatorProcess(SimulatorConfig(**SIM), port=port).start()
    second = SimulatorProcess(SimulatorConfig(**SIM), port=port)
    began = time.monotonic()
    marks: dict[str, float] = {}

    async def outage() -> None:
        if down_s <= 0:  # the same run without an outage: the baseline its wall is compared with
            return
        await asyncio.sleep(start_s)
        await asyncio.to_thread(first.stop)
        marks["stopped_s"] = time.monotonic() - began
        if down_s == float("inf"):
            return
        await asyncio.sleep(down_s)
        await asyncio.to_thread(second.start)
        marks["back_s"] = time.monotonic() - began

    task = asyncio.create_task(outage())
    status = "completed"
    try:
        await run_job(config, records, output=folder / "out", sink=JsonlSink(folder / "events.jsonl"))
    except RowloomError as exc:
        status = f"{type(exc).__name__}: {exc}"
    finally:
        wall = time.monotonic() - began
        task.cancel()
        first.stop()
        if down_s != float("inf"):
            second.stop()
    summary = json.loads((folder / "out" / "summary.json").read_text())
    resumed = None
    if down_s == float("inf"):  # the endpoint is back: the same job again resumes after the last row group
        marks["stopped_after_s"] = wall - marks.get("stopped_s", wall)
        second.start()
        try:
            await run_job(config, records, output=folder / "out")
        finally:
            second.stop()
        again = json.loads((folder / "out" / "summary.json").read_text())
        resumed = {k: again[k] for k in ("status", "records_resumed", "records_written", "rows_dropped")}
    log = read_jsonl(folder / "events.jsonl")
    origin = next(e["ts"] for e in log if e["kind"] == "job_started")
    failed = [e["ts"] - origin for e in log if e["kind"] == "request_completed" and e["outcome"] != "success"]
    return {
        "status": status,
        "wall_s": round(wall, 1),
        "outage": {k: round(v, 1) for k, v in marks.items()},
        "records_written": summary["records_written"],
        "rows_dropped": summary["rows_dropped"],
        "rows_dropped_by_reason": summary["rows_dropped_by_reason"],
        "requests_by_outcome": summary["requests"]["by_outcome"],
        "failed_attempts": len(failed),
        "failed_within_s": round(max(failed) - min(failed), 2) if failed else 0.0,
        "endpoints": summary.get("endpoints"),
        "resumed": resumed,
        "outage_events": [
            {k: e.get(k) for k in ("kind", "failures", "down_for_s", "probes")} | {"at_s": round(e["ts"] - origin, 2)}
            for e in log
            if e["kind"] in ("endpoint_down", "endpoint_up")
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument(
        "--down-s", type=float, default=20.0, help="seconds gone; inf: for good; 0: no outage (the baseline)"
    )
    parser.add_argument("--breaker-s", type=float, default=300.0, help="request_admission.circuit_breaker_s")
    args = parser.parse_args()
    print(json.dumps(run_loop(scenario(args.records, args.down_s, args.breaker_s)), indent=1))


if __name__ == "__main__":
    main()
