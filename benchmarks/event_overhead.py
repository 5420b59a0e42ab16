"""What recording every event costs: the chain example with and without a JSONL events sink (`run --events`).

The provider simulator runs in its own process (latency 0.2 s, capacity 16), so this process's CPU time is the
client's alone. Runs alternate (off, on, off, on, ...) after one warm-up, so drift hits both sides alike.

    python benchmarks/event_overhead.py [--records 200] [--repeats 5] [--output benchmarks/results/event_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.sinks import JsonlSink

ROOT = Path(__file__).resolve().parents[1]
SIMULATOR = SimulatorConfig(latency_s=0.2, capacity=16, models=("sim-small",))


def chain_config(base_url: str) -> DatasetConfig:
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = base_url
    return DatasetConfig.from_dict(data)


class MeasuredJsonlSink(JsonlSink):
    """The JSONL sink, plus the CPU time of its batched encoding and writing (the part of its cost not hidden in
    the end-to-end noise; emitting itself is a list append)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.flush_cpu_s = 0.0

    def flush(self) -> None:
        started = time.thread_time()
        super().flush()
        self.flush_cpu_s += time.thread_time() - started


def one_run(config: DatasetConfig, records: int, events: bool) -> dict:
    """One job in a fresh output folder; wall and client CPU seconds, and the events log's size."""
    with tempfile.TemporaryDirectory(prefix="rowloom-overhead-") as tmp:
        out = Path(tmp)
        sink = MeasuredJsonlSink(out / "events.jsonl") if events else None
        cpu, wall = time.process_time(), time.perf_counter()
        result = run_loop(run_job(config, records, output=out / "data", sink=sink))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert result.summary["records_written"] == records, result.summary
        log = out / "events.jsonl"
        lines = sum(1 for _ in log.open("rb")) if events else 0
        size = log.stat().st_size if events else 0
    return {
        "events": events,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "event_count": lines,
        "bytes": size,
        "sink_flush_cpu_s": round(sink.flush_cpu_s, 5) if sink is not None else 0.0,
    }


def summarise(runs: list[dict]) -> dict:
    def side(flag: bool) -> dict:
        chosen = [r for r in runs if r["events"] is flag]
        walls, cpus = [r["wall_s"] for r in chosen], [r["cpu_s"] for r in chosen]
        return {
            "runs": len(chosen),
            "wall_s_median": round(statistics.median(walls), 4),
            "wall_s_mean": round(statistics.fmean(walls), 4),
            "wall_s_min": round(min(walls), 4),
            "cpu_s_median": round(statistics.median(cpus), 4),
            "cpu_s_mean": round(statistics.fmean(cpus), 4),
            "cpu_s_min": round(min(cpus), 4),
        }

    off, on = side(False), side(True)
    events = statistics.fmean([r["event_count"] for r in runs if r["events"]])
    flush_cpu = statistics.median([r["sink_flush_cpu_s"] for r in runs if r["events"]])
    return {
        "without_events": off,
        "with_events": on,
        "wall_overhead_pct": round(100 * (on["wall_s_median"] / off["wall_s_median"] - 1), 2),
        "cpu_overhead_pct": round(100 * (on["cpu_s_median"] / off["cpu_s_median"] - 1), 2),
        "cpu_overhead_pct_of_minima": round(100 * (on["cpu_s_min"] / off["cpu_s_min"] - 1), 2),
        "events_per_run": round(events),
        "sink_flush_cpu_s_median": round(flush_cpu, 5),
        "sink_flush_cpu_us_per_event": round(1e6 * flush_cpu / events, 2),
        "sink_flush_cpu_pct_of_run_cpu": round(100 * flush_cpu / off["cpu_s_median"], 2),
        "target_pct": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "event_overhead.json")
    args = parser.parse_args()

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine shows up as CPU-time noise
    with SimulatorProcess(SIMULATOR, port=0) as sim:
        config = chain_config(sim.base_url)
        one_run(config, args.records, events=True)  # warm-up: imports, connection pool, first-run caches
        runs = []
        for i in range(args.repeats):
            for events in (False, True) if i % 2 == 0 else (True, False):
                run = one_run(config, args.records, events)
                runs.append(run)
                print(
                    f"events={'on ' if events else 'off'} wall {run['wall_s']:.3f}s cpu {run['cpu_s']:.3f}s "
                    f"({run['event_count']} events)",
                    flush=True,
                )
    report = {
        "command": "python benchmarks/event_overhead.py " + " ".join(sys.argv[1:]),
        "workload": {
            "config": "examples/chain.yaml",
            "records": args.records,
            "requests_per_run": 3 * args.records,
            "simulator": SIMULATOR.model_dump(mode="json", exclude={"api_key"}),
            "simulator_process": "separate",
            "repeats_per_side": args.repeats,
            "order": "alternating, after one warm-up run",
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        },
        "summary": summarise(runs),
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    s = report["summary"]
    print(
        f"\nwall: {s['without_events']['wall_s_median']:.3f}s -> {s['with_events']['wall_s_median']:.3f}s "
        f"({s['wall_overhead_pct']:+.2f}%)\n"
        f"cpu:  {s['without_events']['cpu_s_median']:.3f}s -> {s['with_events']['cpu_s_median']:.3f}s "
        f"({s['cpu_overhead_pct']:+.2f}%; of minima {s['cpu_overhead_pct_of_minima']:+.2f}%)\n"
        f"sink: {s['events_per_run']} events per run, encoding + writing {s['sink_flush_cpu_us_per_event']} µs "
        f"CPU per event ({s['sink_flush_cpu_pct_of_run_cpu']:.2f}% of a run's CPU)\nwrote {args.output}"
    )


if __name__ == "__main__":
    main()
