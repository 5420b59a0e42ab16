"""Run one benchmark scenario in this process: start its simulators, run the job, measure, compute metrics.

The suite runs each scenario in a fresh process (`python -m rowloom.bench.runner NAME`) so that client CPU
and peak RSS belong to that scenario alone; the simulators run in processes of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rowloom.bench import pool_metrics
from rowloom.bench.metrics import BenchEndpoint, ideal_span_s, measure, schedule_fn
from rowloom.bench.scenarios import SCENARIOS, Scenario
from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import run as run_loop
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.models.cache.settings import MODE_ENV
from rowloom.observe.sinks import JsonlSink


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stream(path: Path):
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


@dataclass
class _Run:
    status: str
    wall_s: float
    client_cpu_s: float
    reset_at: float
    sim_stats: dict[str, dict[str, Any]]


def uncached() -> None:
    """Make every run of this process and the processes it starts ask the provider: a benchmark measures the
    providers and admission, and the reply cache (on by default, kept across runs) would answer its repeated
    prompts instead. A config that sets `run.cache.mode` itself (the cache's own benchmark) still decides."""
    os.environ[MODE_ENV] = "off"


#: The provider type of each API shape the simulator speaks.
PROVIDER_TYPES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure_openai"}


def _run_job(
    scenario: Scenario, sims: dict[str, SimulatorConfig], num_records: int, data_dir: Path, events: Path | None
) -> _Run:
    """Start the simulators, warm up, reset their schedules and run the job once, measuring it. The providers
    speak the API shape their simulator speaks."""
    with contextlib.ExitStack() as stack:
        procs = {name: stack.enter_context(SimulatorProcess(sim)) for name, sim in sims.items()}
        data = scenario.build({name: p.base_url for name, p in procs.items()})
        for provider in data.get("providers", []):
            if provider.get("name") in sims:
                provider["type"] = PROVIDER_TYPES[sims[provider["name"]].api]
        config = DatasetConfig.from_dict(data)
        # Warm up: imports and one-time set-up (TLS context, schema compilation) are not per-request costs.
        run_loop(run_job(config, min(num_records, 4), output=None))
        for proc in procs.values():
            proc.reset()  # the capacity and outage schedules start with the run
        reset_at = time.monotonic()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        status = "completed"
        try:
            sink = JsonlSink(events) if events is not None else None
            run_loop(run_job(config, num_records, output=data_dir, sink=sink))
        except Exception as exc:  # a failed scenario is a result, reported with its reason
            status = f"failed: {type(exc).__name__}: {exc}"
        client_cpu = _cpu_s() - cpu0
        wall = time.monotonic() - wall0
        return _Run(status, wall, client_cpu, reset_at, {name: p.stats() for name, p in procs.items()})


def run_scenario(
    scenario: Scenario,
    *,
    quick: bool,
    out_dir: Path,
    keep_output: bool = False,
    records: int | None = None,
    api: str = "openai",
    seed: int | None = None,
) -> dict[str, Any]:
    """Run `scenario` once and return its metrics (also writing its event log into `out_dir`); `records`
    overrides the scenario's size (a smoke run: its figures are not the scenario's); `api` is the wire format
    every simulator and provider speaks (`openai`, `anthropic`, `azure`); `seed` replaces every simulator's seed
    (its latency jitter and fault draws: which requests fail, hang or are slow), to see how much a figure owes
    to one draw.

    A scenario with outage windows first runs the same job against endpoints without them (`baseline_wall_s`),
    so what the outages cost beyond their own length is measured (`outage_overhead_s`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / f"{scenario.name}.events.jsonl"
    events_path.unlink(missing_ok=True)
    num_records = records or scenario.records(quick)
    update: dict[str, Any] = {"api": api} if seed is None else {"api": api, "seed": seed}
    sims = {ep.provider: ep.sim.model_copy(update=update) for ep in scenario.endpoints}
    outage_free = {name: sim.model_copy(update={"outages": ()}) for name, sim in sims.items()}
    baseline: _Run | None = None
    if any(ep.sim.outages for ep in scenario.endpoints):
        with tempfile.TemporaryDirectory(prefix=f"rowloom-bench-{scenario.name}-base-") as base_dir:
            baseline = _run_job(scenario, outage_free, num_records, Path(base_dir), None)
    data_dir = Path(tempfile.mkdtemp(prefix=f"rowloom-bench-{scenario.name}-"))
    run = _run_job(scenario, sims, num_records, data_dir, events_path)
    status, wall, reset_at, sim_stats = run.status, run.wall_s, run.reset_at, run.sim_stats
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not keep_output:
        shutil.rmtree(data_dir, ignore_errors=True)

    # The simulators' schedules started at their reset, a little before the job: shift them onto job time.
    job_start = next((float(e["ts"]) for e in _stream(events_path) if e["kind"] == "job_started"), reset_at)
    offset = max(0.0, job_start - reset_at)
    capacities, latencies, rpms, follow = {}, {}, {}, {}
    for ep in scenario.endpoints:
        base = schedule_fn(ep.sim.capacity, ep.sim.capacity_schedule)
        name = ep.label
        capacities[name] = lambda t, base=base: base(t + offset)
        latencies[name] = ep.sim.latency_s
        rpms[name] = ep.sim.rpm
        follow[name] = [(at - offset, cap) for at, cap in ep.sim.capacity_schedule if at > 0]
    # Each scenario endpoint is one simulated provider: a request's key (provider/model) says which, whatever its
    # alias (a pool's members share theirs).
    known = {ep.label: BenchEndpoint(ep.provider, capacities[ep.label], bool(ep.sim.rpm)) for ep in scenario.endpoints}
    metrics = measure(events_path, known)
    successes = {name: m["success"] for name, m in metrics["endpoints"].items()}
    critical = scenario.critical_path_calls * max(latencies.values())
    ideal = ideal_span_s(
        *pool_metrics.pool_ideal_inputs(scenario, successes, latencies, capacities, offset),
        rpm=rpms,
        critical_path_s=critical,
    )
    # The same bound with each hosted endpoint's *observed* mean service time: on a busy host the simulator
    # itself answers late, which no scheduler can help; this ratio isolates what scheduling lost. (A vLLM-style
    # endpoint keeps its no-load latency: there, longer replies are what over-admission causes.)
    observed = dict(latencies)
    for ep in scenario.endpoints:
        mean = metrics["endpoints"][ep.label]["latency_mean_s"]
        if ep.sim.mode == "hosted" and mean > observed[ep.label]:
            observed[ep.label] = mean
    for ep in scenario.endpoints:
        # Latency against what the same requests take alone: queueing in the server, not spread, raises it.
        no_load = sim_stats[ep.provider].get("service_p50_s")
        if no_load:
            p50 = metrics["endpoints"][ep.label]["latency_p50_s"]
            metrics["endpoints"][ep.label]["latency_p50_over_no_load"] = round(p50 / no_load, 3)
    critical_observed = scenario.critical_path_calls * max(observed.values())
    ideal_observed = ideal_span_s(
        *pool_metrics.pool_ideal_inputs(scenario, successes, observed, capacities, offset),
        rpm=rpms,
        critical_path_s=critical_observed,
    )
    pool = pool_metrics.measure(scenario, _stream(events_path), capacities, offset)
    if pool is not None:
        metrics["pool"] = pool
    requests = metrics["requests"]
    for alias, steps in follow.items():
        if steps:
            metrics["endpoints"][alias]["limit_follow_s"] = limit_follow_s(
                metrics["endpoints"][alias]["limit_timeline"], steps
            )
    metrics["rows_short"] = num_records - metrics["rows_written"] - metrics["rows_dropped"]
    if baseline is not None:
        down = sum(_down_within(ep.sim.outages, wall) for ep in scenario.endpoints)
        metrics["baseline_wall_s"] = round(baseline.wall_s, 3)
        metrics["outage_s"] = round(down, 3)
        metrics["outage_overhead_s"] = round(wall - baseline.wall_s - down, 3)
        if baseline.status != "completed":
            status = f"baseline {baseline.status}"
    return {
        "scenario": scenario.name,
        "api": api,
        **({"seed": seed} if seed is not None else {}),
        "description": scenario.description,
        "quick": quick,
        "num_records": num_records,
        "status": status,
        "ideal_s": round(ideal, 3),
        "span_over_ideal": round(metrics["span_s"] / ideal, 4) if ideal > 0.05 else None,
        "ideal_observed_s": round(ideal_observed, 3),
        "span_over_ideal_observed": round(metrics["span_s"] / ideal_observed, 4) if ideal_observed > 0.05 else None,
        "wall_over_ideal": round(metrics["wall_s"] / ideal, 4) if ideal > 0.05 else None,
        "client_cpu_s": round(run.client_cpu_s, 3),
        "client_cpu_ms_per_request": round(1000 * run.client_cpu_s / requests, 4) if requests else None,
        "client_cpu_over_server": _cpu_over_server(run.client_cpu_s, requests, sim_stats),
        "process_wall_s": round(wall, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        # Other work on this shared host slows the simulators too: the 1-minute load average as the run ended.
        "host_load_1m": round(os.getloadavg()[0], 2),
        "simulators": {
            name: {
                k: stats.get(k) for k in ("requests_total", "by_status", "peak_in_flight", "mean_in_flight", "cpu_s")
            }
            for name, stats in sim_stats.items()
        },
        **metrics,
    }


def _cpu_over_server(client_cpu_s: float, requests: int, sim_stats: dict[str, dict[str, Any]]) -> float | None:
    """Client CPU per request ÷ the simulators' CPU per request they answered.

    Both ends do the same HTTP and JSON work on the same host, so the ratio holds while the host's speed does not:
    on this shared VM the same commit measured 0.5 and 2.1 ms of client CPU per request hours apart, with the
    simulator's own cost moving in step (0.24 and 0.92 ms) and the ratio at ~2.1 both times.
    """
    server_cpu = sum(float(s.get("cpu_s") or 0.0) for s in sim_stats.values())
    served = sum(int(s.get("requests_total") or 0) for s in sim_stats.values())
    if not requests or not served or server_cpu <= 0:
        return None
    return round((client_cpu_s / requests) / (server_cpu / served), 3)


def _down_within(outages: tuple[tuple[float, float], ...], wall_s: float) -> float:
    """Seconds of the outage windows that fell within the first `wall_s` seconds."""
    return sum(max(0.0, min(start + length, wall_s) - start) for start, length in outages if start < wall_s)


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
    parser.add_argument("--records", type=int, default=None, help="Override the scenario's number of records")
    parser.add_argument("--api", choices=sorted(PROVIDER_TYPES), default="openai", help="The wire format spoken")
    parser.add_argument("--seed", type=int, default=None, help="Every simulator's seed instead of the scenario's")
    args = parser.parse_args(argv)
    uncached()
    result = run_scenario(
        SCENARIOS[args.scenario], quick=args.quick, out_dir=args.out, records=args.records, api=args.api, seed=args.seed
    )
    (args.out / f"{args.scenario}.json").write_text(json.dumps(result, indent=1))
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
