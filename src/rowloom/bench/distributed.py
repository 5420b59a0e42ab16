"""`rowloom bench distributed`: the Ray executor against one process, over real sockets to the simulator.

Four measurements: (1) the issue's shared endpoint — capacity 16, `max_parallel_requests: 64`, 2 workers — for
span ÷ ideal, 429 share and the simulator's peak concurrency; (2) a CPU-heavy workload (a custom column that
burns 20 ms of CPU per row) for the throughput of N workers against one process; (3) the round trip of one grant
renewal to a live authority actor; (4) the CPU cost of one authority renewal at cluster scale (pure Python).
Needs the `ray` extra; talks to 127.0.0.1 only.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rowloom.bench.scenarios import chain
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.observe.sinks import MemorySink

BURN_S = 0.02  # rowloom.bench.workloads:burn_cpu_heavy
SHARED_LATENCY_S = 0.05
SHARED_CAPACITY = 16


def _chain(base_url: str, **run: Any) -> dict[str, Any]:
    """The examples/chain.yaml workload with a ceiling of 64, far above what the endpoints bear."""
    return chain(64, run=run)({"sim": base_url})


def _span(sink: MemorySink, first: str, last: str) -> float:
    starts = [e.ts for e in sink.events if e.kind == first]
    ends = [e.ts for e in sink.events if e.kind == last]
    return max(ends) - min(starts)


def _run(config: DatasetConfig, records: int, workers: int | None) -> tuple[float, MemorySink]:
    """One run into a temporary folder (single process when `workers` is None); wall seconds and its events."""
    from rowloom.engine.distributed.ray_executor import run_distributed
    from rowloom.engine.job import run_job

    out = Path(tempfile.mkdtemp(prefix="rowloom-bench-"))
    sink = MemorySink()
    started = time.monotonic()
    try:
        if workers is None:
            run_loop(run_job(config, records, output=out, sink=sink))
        else:
            run_distributed(config, records, output=out, workers=workers, sink=sink)
        return time.monotonic() - started, sink
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 4) for key in runs[0]}


def shared_endpoint(sizes: list[int], workers: int, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The issue's check: N workers on one capacity-16 endpoint whose ceiling (64) is far above what it bears,
    at each run size (a short run shows the start and the tail, a longer one the steady state)."""
    result: dict[str, Any] = {}
    simulator = SimulatorConfig(latency_s=SHARED_LATENCY_S, capacity=SHARED_CAPACITY, models=("sim-small",))
    with SimulatorProcess(simulator) as sim:
        data = _chain(sim.base_url, row_group_size=10, seed=11)
        config = DatasetConfig.from_dict(data)
        for records in sizes:
            by_run: dict[str, Any] = {}
            result[f"{records}_records"] = by_run
            for name, count in (("single_process", None), (f"ray_{workers}_workers", workers)):
                runs = []
                for _ in range(repeats):
                    sim.reset()
                    wall, sink = _run(config, records, count)
                    stats = sim.stats()
                    ok = stats["by_status"].get("200", 0)
                    ideal = ok * SHARED_LATENCY_S / SHARED_CAPACITY
                    span = _span(sink, "request_admitted", "request_completed")
                    runs.append(
                        {
                            "wall_s": round(wall, 2),
                            "request_span_s": round(span, 2),
                            "ideal_s": round(ideal, 2),
                            "span_over_ideal": round(span / ideal, 3),
                            "peak_in_flight": stats["peak_in_flight"],
                            "share_429": round(stats["by_status"].get("429", 0) / stats["requests_total"], 4),
                        }
                    )
                    log(f"shared endpoint, {records} records, {name}: {runs[-1]}")
                by_run[name] = {"median": _median_of(runs), "runs": runs}
    return result


def cpu_heavy(records: int, workers: int, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """An LLM column, then 20 ms of CPU per row in a custom column: one process is held to one core by the GIL."""
    result: dict[str, Any] = {}
    with SimulatorProcess(SimulatorConfig(latency_s=0.05, capacity=64, models=("sim-small",))) as sim:
        data = _chain(sim.base_url, row_group_size=50, seed=5)
        data["columns"] = [
            *data["columns"][:3],  # topic, difficulty, question
            {
                "name": "parsed",
                "type": "custom",
                "function": "rowloom.bench.workloads:burn_cpu_heavy",
                "inputs": ["question"],
                "dtype": "int",
            },
        ]
        config = DatasetConfig.from_dict(data)
        for name, count in (("single_process", None), (f"ray_{workers}_workers", workers)):
            runs = []
            for _ in range(repeats):
                wall, sink = _run(config, records, count)
                span = _span(sink, "task_admitted", "row_group_checkpointed")  # without starting the workers
                runs.append(
                    {
                        "wall_s": round(wall, 2),
                        "work_span_s": round(span, 2),
                        "rows_per_s": round(records / span, 1),
                        "cpu_ideal_s": round(records * BURN_S / (count or 1), 2),
                    }
                )
                log(f"cpu heavy, {name}: {runs[-1]}")
            result[name] = {"median": _median_of(runs), "runs": runs}
    single = result["single_process"]["median"]
    multi = result[f"ray_{workers}_workers"]["median"]
    result["speedup_work_span"] = round(single["work_span_s"] / multi["work_span_s"], 2)
    result["speedup_wall"] = round(single["wall_s"] / multi["wall_s"], 2)
    return result


def authority_cost(renewals: int = 20000, budget_s: float = 2.0) -> dict[str, Any]:
    """µs of CPU per renewal for N holders each reporting a batch of samples; the load of one authority when
    100 workers renew every 100 ms while 10k requests of ~1 s are in flight (1,000 reports/s of ~10 samples).
    Each shape runs `renewals` renewals or for `budget_s`, whichever ends first (the mean needs no more)."""
    from rowloom.concurrency.clock import SYSTEM_CLOCK
    from rowloom.config.request_admission import RequestAdmissionConfig
    from rowloom.engine.distributed.authority import CapacityAuthority
    from rowloom.engine.distributed.grants import Report, Sample
    from rowloom.models.admission.cooldown import Cooldown
    from rowloom.models.admission.limits import limit_from_config

    out: dict[str, Any] = {}
    for workers, samples in ((2, 10), (100, 10), (100, 100), (1000, 1)):
        config = RequestAdmissionConfig(initial_limit=10000, slow_start=False)
        limit = limit_from_config(config, ceiling=10000, clock=SYSTEM_CLOCK)
        cooldown = Cooldown(threshold=8, default_s=1, max_s=60)
        authority = CapacityAuthority("k", limit, cooldown=cooldown, lease_ttl_s=5)
        rng = random.Random(1)
        each = 10000 // workers
        spent, done = 0.0, 0
        while done < renewals and spent < budget_s:  # reports built in batches, outside the timed part
            batch = [
                Report(
                    f"w{i % workers}",
                    each + rng.randint(0, 10),
                    each,
                    tuple(Sample(0.5, 0.5, each, rng.random() < 0.001, 0, each) for _ in range(samples)),
                )
                for i in range(done, min(done + 100, renewals))
            ]
            started = time.perf_counter()
            for report in batch:
                authority.renew(report)
            spent += time.perf_counter() - started
            done += len(batch)
        out[f"{workers}_workers_{samples}_samples"] = round(spent / done * 1e6, 1)
    out["authority_cpu_s_per_s_100_workers_10k_in_flight"] = round(1000 * out["100_workers_10_samples"] / 1e6, 3)
    return {"us_per_renewal": out}


def renewal_round_trip(ray: Any, calls: int = 300) -> dict[str, float]:
    """Milliseconds of one grant renewal from a worker-like caller to a live authority actor (median, p95)."""
    from rowloom.engine.distributed.grants import Report
    from rowloom.engine.distributed.ray_executor import _actor_classes

    config = DatasetConfig.from_dict(_chain("http://127.0.0.1:9/v1"))
    authority_actor = _actor_classes(ray)[0].options(num_cpus=0).remote("k", config, 64, 2.0)
    try:
        ray.get(authority_actor.renew.remote(Report("w", 8, 0)))  # started and warm
        times = []
        for i in range(calls):
            started = time.perf_counter()
            ray.get(authority_actor.renew.remote(Report("w", 8, i % 8)))
            times.append((time.perf_counter() - started) * 1000)
    finally:
        ray.kill(authority_actor)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * len(times))], 3)}


def run(
    *, records: list[int], records_cpu: int, workers: int, repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """All four measurements (Ray ones on a local instance sized to the machine)."""
    import os

    from rowloom.engine.distributed import import_ray
    from rowloom.engine.distributed.ray_executor import start_local_ray

    ray = import_ray()
    start_local_ray(ray)  # on loopback only, as a run starts it
    try:
        document = {
            "cpus": os.cpu_count(),
            "workers": workers,
            "repeats": repeats,
            "shared_endpoint": shared_endpoint(records, workers, repeats, log),
            "cpu_heavy": cpu_heavy(records_cpu, workers, repeats, log),
            "renewal_round_trip": renewal_round_trip(ray),
        }
    finally:
        ray.shutdown()
    document["authority_cost"] = authority_cost()
    return document


def markdown(document: dict[str, Any]) -> str:
    """The readable summary beside the JSON."""
    workers = document["workers"]
    ray_key = f"ray_{workers}_workers"
    shared, cpu = document["shared_endpoint"], document["cpu_heavy"]
    lines = [
        f"# rowloom bench distributed ({document['cpus']} CPUs, {workers} workers, medians of "
        f"{document['repeats']} runs)",
        "",
        "## One endpoint of capacity 16, max_parallel_requests 64 (`examples/chain.yaml`, 50 ms replies)",
        "",
        "| records | run | span ÷ ideal (min – max) | 429 share | peak in flight | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for size, by_run in shared.items():
        for name in ("single_process", ray_key):
            m, ratios = by_run[name]["median"], [r["span_over_ideal"] for r in by_run[name]["runs"]]
            lines.append(
                f"| {size.removesuffix('_records')} | {name} | {m['span_over_ideal']} ({min(ratios)} – {max(ratios)}) "
                f"| {m['share_429']:.2%} | {m['peak_in_flight']:g} | {m['wall_s']} |"
            )
    lines += [
        "",
        f"## CPU-heavy column ({BURN_S * 1000:.0f} ms of CPU per row)",
        "",
        "| run | work span s | rows/s | CPU-bound ideal s | wall s |",
        "|---|---|---|---|---|",
    ]
    for name in ("single_process", ray_key):
        m = cpu[name]["median"]
        lines.append(f"| {name} | {m['work_span_s']} | {m['rows_per_s']} | {m['cpu_ideal_s']} | {m['wall_s']} |")
    lines += [
        "",
        f"Speed-up: {cpu['speedup_work_span']}× on the work span, {cpu['speedup_wall']}× on wall time "
        "(which includes starting the worker processes).",
        "",
        f"One renewal, worker to authority actor and back: {document['renewal_round_trip']['median_ms']} ms median, "
        f"{document['renewal_round_trip']['p95_ms']} ms p95.",
        "",
        "## One authority's CPU per renewal (µs)",
        "",
        "| holders × samples per report | µs |",
        "|---|---|",
    ]
    for key, value in document["authority_cost"]["us_per_renewal"].items():
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n"
