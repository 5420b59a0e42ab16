"""An endpoint pool end to end over real sockets: two simulator processes serve one alias, one of them refuses
connections for a while; every row is written, each cell names the endpoint that served it, the stronger endpoint
carries more, and the report and trace show the endpoints (and no pseudo-endpoint for the pool's queue)."""

from __future__ import annotations

from collections import Counter

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.perfetto import build_trace
from rowloom.observe.report import render_report
from rowloom.observe.sinks import JsonlSink, read_jsonl

from .helpers import chain_dict, listed_table

FAST_PROBES = {"probe_backoff_s": 0.2, "probe_backoff_max_s": 1.0}


async def test_a_pool_rides_out_one_endpoints_outage_and_records_who_served_each_cell(tmp_path):
    n = 200
    small = SimulatorProcess(SimulatorConfig(mode="vllm", latency_s=0.05, capacity=4, models=("sim-small",)))
    big = SimulatorProcess(
        SimulatorConfig(mode="vllm", latency_s=0.05, capacity=12, models=("sim-small",), outages="0.5+1.5")
    )
    small.start()
    big.start()
    try:
        data = chain_dict("http://127.0.0.1:9/v1", row_group_size=50, seed=3, request_admission=FAST_PROBES)
        data["providers"] = [{"name": "small", "base_url": small.base_url}, {"name": "big", "base_url": big.base_url}]
        writer = data["models"][0]
        del writer["provider"]
        writer["endpoints"] = [{"provider": "small", "max_parallel_requests": 4}, {"provider": "big"}]
        for column in data["columns"]:
            if column["name"] == "answer":
                column["record_endpoint"] = True
        config = DatasetConfig.from_dict(data)
        out, events = tmp_path / "out", tmp_path / "out" / "events.jsonl"
        result = await run_job(config, n, output=out, sink=JsonlSink(events))
    finally:
        small.stop()
        big.stop()
    summary = result.summary
    assert summary["status"] == "completed", summary["message"]
    assert summary["records_written"] == n and summary["rows_dropped"] == 0, summary["rows_dropped_by_reason"]
    table = listed_table(out)
    served = Counter(table.column("answer__endpoint").to_pylist())
    assert set(served) == {"small/sim-small", "big/sim-small"}, served
    assert served["big/sim-small"] > served["small/sim-small"]  # three times the capacity, despite its outage

    log = read_jsonl(events)
    completed = Counter((e["key"], e["outcome"]) for e in log if e["kind"] == "request_completed")
    assert completed[("big/sim-small", "connection_error")] > 0, completed  # the outage did happen mid-run
    assert {e["alias"] for e in log if e["kind"] == "request_completed"} == {"writer"}
    assert [e["key"] for e in log if e["kind"] == "endpoint_down"] == ["big/sim-small"]
    queued = [e for e in log if e["kind"] == "request_queued"]
    assert queued and {e["key"] for e in queued} == {"pool:writer"}
    from_queue = [e for e in log if e["kind"] == "request_admitted" and e.get("queue") == "pool:writer"]
    assert len(from_queue) <= len(queued)  # every admission from the pool's queue had queued there
    processes = {
        e["args"]["name"] for e in build_trace(log)["traceEvents"] if e.get("ph") == "M" and e["name"] == "process_name"
    }
    assert {"small/sim-small", "big/sim-small"} <= {name.split(" ")[-1] for name in processes}, processes
    html = render_report(out, events=events).read_text()
    assert "big/sim-small" in html and "small/sim-small" in html
