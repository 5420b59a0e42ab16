"""Run one benchmark scenario in this process: start its simulators, run the job, measure, compute metrics.

The suite runs each scenario in a fresh process (`python -m rowloom.bench.runner NAME`) so that client CPU
and peak RSS belong to that scenario alone; the simulators run in processes of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from rowloom.bench.metrics import MetricsAccumulator, ideal_span_s, schedule_fn
from rowloom.bench.scenarios import SCENARIOS, Scenario
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.sinks import JsonlSink


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stream(path: Path):
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def run_scenario(scenario: Scenario, *, quick: bool, out_dir: Path, keep_output: bool = False) -> dict[str, Any]:
    """Run `scenario` once and return its metrics (also writing its event log into `out_dir`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / f"{scenario.name}.events.jsonl"
    events_path.unlink(missing_ok=True)
    num_records = scenario.records(quick)
    data_dir = Path(tempfile.mkdtemp(prefix=f"rowloom-bench-{scenario.name}-"))
    with contextlib.ExitStack() as stack:
        sims = {ep.provider: stack.enter_context(SimulatorProcess(ep.sim)) for ep in scenario.endpoints}
        config = DatasetConfig.from_dict(scenario.build({name: s.base_url for name, s in sims.items()}))
        # Warm up: imports and one-time set-up (TLS context, schema compilation) are not per-request costs.
        asyncio.run(run_job(config, min(num_records, 4), output=None))
        for s in sims.values():
            s.reset()  # the capacity schedule starts with the run
        reset_at = time.monotonic()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        status = "completed"
        try:
            asyncio.run(run_job(config, num_records, output=data_dir, sink=JsonlSink(events_path)))
        except Exception as exc:  # a failed scenario is a result, reported with its reason
            status = f"failed: {type(exc).__name__}: {exc}"
        client_cpu = _cpu_s() - cpu0
        wall = time.monotonic() - wall0
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sim_stats = {name: s.stats() for name, s in sims.items()}
    if not keep_output:
        shutil.rmtree(data_dir, ignore_errors=True)

    # The simulators' schedules started at their reset, a little before the job: shift them onto job time.
    job_start = next((float(e["ts"]) for e in _stream(events_path) if e["kind"] == "job_started"), reset_at)
    offset = max(0.0, job_start - reset_at)
    capacities, latencies, rpms, follow = {}, {}, {}, {}
    for ep in scenario.endpoints:
        base = schedule_fn(ep.sim.capacity, ep.sim.capacity_schedule)
        for alias in ep.aliases:
            capacities[alias] = lambda t, base=base: base(t + offset)
            latencies[alias] = ep.sim.latency_s
            rpms[alias] = ep.sim.rpm
            follow[alias] = [(at - offset, cap) for at, cap in ep.sim.capacity_schedule if at > 0]
    paced = [alias for alias, rpm in rpms.items() if rpm]
    metrics = MetricsAccumulator(capacities, paced).feed_all(_stream(events_path)).result()
    successes = {alias: m["success"] for alias, m in metrics["endpoints"].items()}
    critical = scenario.critical_path_calls * max(latencies.values())
    ideal = ideal_span_s(successes, latencies, capacities, rpm=rpms, critical_path_s=critical)
    # The same bound with each hosted endpoint's *observed* mean service time: on a busy host the simulator
    # itself answers late, which no scheduler can help; this ratio isolates what scheduling lost. (A vLLM-style
    # endpoint keeps its no-load latency: there, longer replies are what over-admission causes.)
    observed = dict(latencies)
    for ep in scenario.endpoints:
        for alias in ep.aliases:
            mean = metrics["endpoints"][alias]["latency_mean_s"]
            if ep.sim.mode == "hosted" and observed[alias] > 0 and mean > observed[alias]:
                observed[alias] = mean
    critical_observed = scenario.critical_path_calls * max(observed.values())
    ideal_observed = ideal_span_s(successes, observed, capacities, rpm=rpms, critical_path_s=critical_observed)
    requests = metrics["requests"]
    for alias, steps in follow.items():
        if steps:
            metrics["endpoints"][alias]["limit_follow_s"] = limit_follow_s(
                metrics["endpoints"][alias]["limit_timeline"], steps
            )
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "quick": quick,
        "num_records": num_records,
        "status": status,
        "ideal_s": round(ideal, 3),
        "span_over_ideal": round(metrics["span_s"] / ideal, 4) if ideal > 0.05 else None,
        "ideal_observed_s": round(ideal_observed, 3),
        "span_over_ideal_observed": round(metrics["span_s"] / ideal_observed, 4) if ideal_observed > 0.05 else None,
        "wall_over_ideal": round(metrics["wall_s"] / ideal, 4) if ideal > 0.05 else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_ms_per_request": round(1000 * client_cpu / requests, 4) if requests else None,
        "process_wall_s": round(wall, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "simulators": {
            name: {
                k: stats.get(k) for k in ("requests_total", "by_status", "peak_in_flight", "mean_in_flight", "cpu_s")
            }
            for name, stats in sim_stats.items()
        },
        **metrics,
    }


def limit_follow_s(timeline: list[tuple[float, int]], steps: list[tuple[float, int]]) -> float | None:
    """Seconds from the last capacity step until the adaptive limit is within 25% above the new capacity."""
    at, capacity = steps[-1]
    for t, limit in timeline:
        if t >= at and limit <= capacity * 1.25:
            return round(t - at, 3)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one rowloom benchmark scenario in this process.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, required=True, help="Folder for NAME.json and NAME.events.jsonl")
    args = parser.parse_args(argv)
    result = run_scenario(SCENARIOS[args.scenario], quick=args.quick, out_dir=args.out)
    (args.out / f"{args.scenario}.json").write_text(json.dumps(result, indent=1))
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
