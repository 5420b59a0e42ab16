"""What the garbage collector costs a run, with the heap a run starts with frozen (`engine/heap.py`) and without.

The large benchmark scenario (one LLM column, zero-latency simulator in its own process, 10k records, the reply
cache off) runs alternately with `frozen_heap` as it is and with it made a no-op, `--repeats` times each. Every
collection is timed through `gc.callbacks` (the thread's CPU time from its start to its stop), by generation;
beside it the run's client CPU per request.

    python benchmarks/gc_freeze.py [--records 10000] [--repeats 4] [--output ...]

Writes the figures as JSON to `--output` and a readable summary beside it (the same name, `.md`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from written import write_result

from rowloom.bench.scenarios import SCENARIOS
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine import job
from rowloom.engine.job import run_job
from rowloom.models.cache import with_cache

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = SCENARIOS["large_overhead_10k"]
_FROZEN = job.frozen_heap


@contextlib.contextmanager
def _not_frozen() -> Iterator[None]:
    yield


class CollectionTimes:
    """CPU seconds and count of the collector's runs, by generation, while installed in `gc.callbacks`."""

    def __init__(self) -> None:
        self.seconds: Counter[int] = Counter()
        self.count: Counter[int] = Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds[info["generation"]] += time.thread_time() - self._started
            self.count[info["generation"]] += 1


def run(config: DatasetConfig, records: int, frozen: bool) -> dict:
    """One job: client CPU per request and the collector's time, by generation."""
    job.frozen_heap = _FROZEN if frozen else _not_frozen
    times = CollectionTimes()
    gc.callbacks.append(times)
    try:
        with tempfile.TemporaryDirectory(prefix="rowloom-gc-bench-") as tmp:
            cpu = time.process_time()
            result = run_loop(run_job(config, records, output=Path(tmp) / "out"))
            cpu = time.process_time() - cpu
    finally:
        gc.callbacks.remove(times)
        job.frozen_heap = _FROZEN
    requests = result.summary["requests"]["total"]
    return {
        "client_cpu_ms_per_request": round(1000 * cpu / requests, 4),
        "gc_s": round(sum(times.seconds.values()), 3),
        "gc_s_by_generation": {str(g): round(times.seconds[g], 3) for g in sorted(times.seconds)},
        "collections_by_generation": {str(g): times.count[g] for g in sorted(times.count)},
    }


def measure(records: int, repeats: int) -> dict:
    endpoint = SCENARIO.endpoints[0]
    runs: dict[str, list[dict]] = {"frozen": [], "not_frozen": []}
    with SimulatorProcess(endpoint.sim) as sim:
        config = with_cache(DatasetConfig.from_dict(SCENARIO.build({endpoint.provider: sim.base_url})), mode="off")
        run(config, 200, True)  # warm-up: imports, connection pool
        for attempt in range(repeats):
            for side in ("frozen", "not_frozen") if attempt % 2 == 0 else ("not_frozen", "frozen"):
                runs[side].append(run(config, records, side == "frozen"))
    return {
        side: {
            "gc_s_median": round(statistics.median(r["gc_s"] for r in results), 3),
            "client_cpu_ms_per_request_median": round(
                statistics.median(r["client_cpu_ms_per_request"] for r in results), 4
            ),
            "runs": results,
        }
        for side, results in runs.items()
    }


def summary(result: dict, command: str) -> str:
    lines = [
        f"# The collector's cost in a run ({SCENARIO.name}, {result['records']:,} records)",
        "",
        f"`{command}` — Python {result['python']}, host load (1 min) {result['host_load_1m']['start']} at the start, "
        f"{result['host_load_1m']['end']} at the end",
        "",
        "| heap | collector CPU s per run: median | mean | by run | client CPU ms/request (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for side in ("not_frozen", "frozen"):
        figures = result[side]
        seconds = [r["gc_s"] for r in figures["runs"]]
        lines.append(
            f"| {side.replace('_', ' ')} | {figures['gc_s_median']} | {statistics.mean(seconds):.3f} | "
            f"{', '.join(map(str, seconds))} | {figures['client_cpu_ms_per_request_median']} |"
        )
    lines += [
        "",
        "Without the freeze, a full scan of the heap the run started with (imports, config) comes in some runs and",
        "not others (CPython runs one only once the objects that survived since the last exceed a quarter of all",
        "long-lived ones): the runs with one spend several times as long collecting, and the mean says more than the",
        "median.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "gc_freeze.json")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    result = {
        "scenario": SCENARIO.name,
        "records": args.records,
        "repeats": args.repeats,
        **measure(args.records, args.repeats),
        "python": sys.version.split()[0],
        "host_load_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
    }
    print(write_result(args.output, result, summary))


if __name__ == "__main__":
    main()
