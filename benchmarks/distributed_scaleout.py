"""Ray executor figures: span ÷ ideal against one capacity-16 endpoint, and scale-out on a CPU-heavy workload.

Run: python benchmarks/distributed_scaleout.py [--records-cpu 2000]
Needs the ray extra. Everything talks to a simulator on 127.0.0.1; prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import ray
import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.distributed.ray_executor import run_distributed
from rowloom.engine.job import run_job
from rowloom.observe.sinks import MemorySink

ROOT = Path(__file__).resolve().parents[1]


def chain_dict(base_url: str, **run) -> dict:
    """examples/chain.yaml pointed at `base_url`, with run settings overridden."""
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = base_url
    data["run"].update(run)
    return data


def _span(sink: MemorySink) -> float:
    """First request admitted to last request completed, across every worker's events."""
    ts = [e.ts for e in sink.events if e.kind in ("request_admitted", "request_completed")]
    return max(ts) - min(ts)


def _run(config: DatasetConfig, records: int, workers: int | None) -> tuple[float, float, MemorySink]:
    out = Path(tempfile.mkdtemp(prefix="rowloom-bench-"))
    sink = MemorySink()
    started = time.monotonic()
    try:
        if workers is None:
            asyncio.run(run_job(config, records, output=out, sink=sink))
        else:
            run_distributed(config, records, output=out, workers=workers, sink=sink)
        return time.monotonic() - started, _span(sink), sink
    finally:
        shutil.rmtree(out, ignore_errors=True)


def shared_endpoint(records: int, workers: int) -> dict:
    """The issue's scenario: capacity 16, max_parallel_requests 64; span ÷ ideal and 429 share."""
    latency = 0.05
    out = {}
    with SimulatorProcess(SimulatorConfig(latency_s=latency, capacity=16, models=("sim-small",))) as sim:
        data = chain_dict(sim.base_url, row_group_size=10, seed=11)
        data["models"][0]["max_parallel_requests"] = 64
        config = DatasetConfig.from_dict(data)
        for name, count in (("single_process", None), (f"ray_{workers}_workers", workers)):
            sim.reset()
            wall, span, _ = _run(config, records, count)
            stats = sim.stats()
            ok = stats["by_status"].get("200", 0)
            ideal = ok * latency / 16
            out[name] = {
                "wall_s": round(wall, 2),
                "request_span_s": round(span, 2),
                "ideal_s": round(ideal, 2),
                "span_over_ideal": round(span / ideal, 2),
                "peak_in_flight": stats["peak_in_flight"],
                "share_429": round(stats["by_status"].get("429", 0) / stats["requests_total"], 4),
            }
    return out


def cpu_heavy(records: int, workers: int) -> dict:
    """A custom column that burns 4 ms of CPU per row between two LLM columns; the endpoint is not the limit."""
    out = {}
    with SimulatorProcess(SimulatorConfig(latency_s=0.01, capacity=64, models=("sim-small",))) as sim:
        data = chain_dict(sim.base_url, row_group_size=50, seed=5)
        data["models"][0]["max_parallel_requests"] = 64
        data["columns"] = [
            *data["columns"][:3],
            {
                "name": "parsed",
                "type": "custom",
                "function": "rowloom.bench.workloads:burn_cpu",
                "inputs": ["question"],
                "dtype": "int",
            },
            {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "{{ question }} ({{ parsed }})"},
        ]
        config = DatasetConfig.from_dict(data)
        for name, count in (("single_process", None), (f"ray_{workers}_workers", workers)):
            wall, span, _ = _run(config, records, count)
            rate = round(records / span, 1)
            out[name] = {"wall_s": round(wall, 2), "work_span_s": round(span, 2), "rows_per_s": rate}
    single, multi = out["single_process"], out[f"ray_{workers}_workers"]
    out["speedup_work_span"] = round(single["work_span_s"] / multi["work_span_s"], 2)
    out["speedup_wall"] = round(single["wall_s"] / multi["wall_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--records-cpu", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        print(
            json.dumps(
                {
                    "shared_endpoint": shared_endpoint(args.records, args.workers),
                    "cpu_heavy": cpu_heavy(args.records_cpu, args.workers),
                },
                indent=1,
            )
        )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
