"""What the reply cache costs: client CPU per request with it on against off, and a lookup's latency at 1 M entries.

The large benchmark scenario (one LLM column, zero-latency simulator in its own process, so this process's CPU is
the client's alone; the cache's writer thread counts in it) runs 10k records with the cache off and with it on into
an empty cache folder (every request a miss: key, lookup, single flight and a stored reply), alternately,
`--repeats` pairs (off-on, then on-off); then once more against the now full cache (every request a hit). Issue 17
asks for at most 5% more client CPU per request with the cache on: checked on the median, over the pairs, of an
on-run's CPU over the off-run's beside it (the host's speed drifts between runs minutes apart). Then a cache of
`--entries` generated replies is built and `--lookups` random keys (nine in ten stored) are looked up one at a time;
issue 17 asks for a p99 of 1 ms.

    python benchmarks/cache_overhead.py [--records 10000] [--repeats 5] [--entries 1000000] [--output ...]

Writes the figures as JSON to `--output` and a readable summary beside it (the same name, `.md`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from written import write_result

from rowloom.bench.scenarios import SCENARIOS
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.clock import SYSTEM_CLOCK
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.runtime import RequestRuntime
from rowloom.models.cache import ReplyStore, open_cache, with_cache
from rowloom.models.cache.store import _COLUMNS as COLUMNS
from rowloom.models.cache.store import _ROW as ROW
from rowloom.models.cache.store import FILE_NAME, stored_row
from rowloom.models.ledger import TokenLedger
from rowloom.models.types import ChatRequest, ChatResponse, Usage
from rowloom.observe.context import correlate
from rowloom.observe.sinks import FanoutSink
from rowloom.observe.stats import RequestStats

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = SCENARIOS["large_overhead_10k"]


def run(config: DatasetConfig, records: int) -> tuple[float, dict]:
    """Client CPU seconds and the summary of one job in a fresh output folder."""
    with tempfile.TemporaryDirectory(prefix="rowloom-cache-bench-") as tmp:
        cpu = time.process_time()
        result = run_loop(run_job(config, records, output=Path(tmp) / "out"))
        return time.process_time() - cpu, result.summary


def run_overhead(records: int, repeats: int) -> dict:
    endpoint = SCENARIO.endpoints[0]
    off_cpu, on_cpu = [], []
    with SimulatorProcess(endpoint.sim) as sim, tempfile.TemporaryDirectory(prefix="rowloom-cache-") as caches:
        base = DatasetConfig.from_dict(SCENARIO.build({endpoint.provider: sim.base_url}))
        off = with_cache(base, mode="off")
        run(off, 200)  # warm-up: imports, connection pool
        for attempt in range(repeats):
            folder = Path(caches) / f"cold-{attempt}"  # empty: every request a miss, stored
            cold_config = with_cache(base, mode="readwrite", path=str(folder))
            # Off then on, then on then off: a host that speeds up or slows down through the runs (it does, by
            # 10-40%) favours neither side of the pairs' ratios.
            for side in ("off", "on") if attempt % 2 == 0 else ("on", "off"):
                if side == "off":
                    cpu, summary = run(off, records)
                    off_cpu.append(cpu)
                else:
                    cpu, cold = run(cold_config, records)
                    on_cpu.append(cpu)
        # The last cache folder again, now full: every request a hit.
        warm_cpu, warm = run(with_cache(base, mode="readwrite", path=str(folder)), records)
    requests = summary["requests"]["total"]
    assert cold["cache"]["misses"] == requests and warm["cache"]["hits"] == requests, (cold["cache"], warm["cache"])
    off_ms, on_ms = 1000 * min(off_cpu) / requests, 1000 * min(on_cpu) / requests
    # The host's speed drifts by 10-40% between runs minutes apart: each on-run is compared with the off-run beside
    # it, and the median of those ratios is the figure checked against the bound.
    pairs = sorted(on / off for off, on in zip(off_cpu, on_cpu, strict=True))
    overhead = statistics.median(pairs) - 1
    return {
        "records": records,
        "requests": requests,
        "repeats": repeats,
        "client_cpu_ms_per_request_cache_off": round(off_ms, 4),
        "client_cpu_ms_per_request_cache_on_all_misses": round(on_ms, 4),
        "client_cpu_ms_per_request_cache_on_all_hits": round(1000 * warm_cpu / requests, 4),
        "all_runs_cpu_s": {"off": [round(c, 3) for c in off_cpu], "on": [round(c, 3) for c in on_cpu]},
        "overhead_of_best_runs": round(on_ms / off_ms - 1, 4),
        "paired_ratios": [round(r, 4) for r in pairs],
        "overhead": round(overhead, 4),
        "bound": 0.05,
        "within_bound": overhead <= 0.05,
    }


class InstantClient:
    """Answers every chat at once with a reply the size of the scenario's: only rowloom's own work is timed."""

    def __init__(self, *_: object):
        self.reply = ChatResponse(" ".join(["word"] * 40), Usage(60, 50), finish_reason="stop")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return self.reply

    async def aclose(self) -> None:
        return None


async def executor_cpu_s(config: DatasetConfig, requests: int, cache_folder: Path | None) -> float:
    """CPU seconds of `requests` chats (64 at a time, each its own row's task) through the executor with an
    instant client, with the reply cache in `cache_folder` (empty: every request a miss) or none; the writer
    thread's commits and the cache's opening and closing included."""
    sink = FanoutSink([RequestStats(), TokenLedger()])
    model = config.models[0]
    async with RequestRuntime(config, sink=sink, clock=SYSTEM_CLOCK, client_factory=InstantClient) as runtime:
        executor = runtime.executor
        started = time.process_time()
        if cache_folder is not None:
            executor.cache = await asyncio.to_thread(open_cache, with_cache(config, path=str(cache_folder)).run.cache)

        async def one(i: int) -> None:
            text = f"Write one question about topic {i % 97} at difficulty {i % 5}/5, in the style of an exam."
            request = ChatRequest(model=model.model, messages=({"role": "user", "content": text},), params={})
            with correlate(task=f"{i // 1000}:q:{i % 1000}"):
                await executor.chat(model.alias, request, group="q")

        for start in range(0, requests, 64):
            await asyncio.gather(*(one(i) for i in range(start, min(requests, start + 64))))
        if executor.cache is not None:
            await asyncio.to_thread(executor.cache.close)
        return time.process_time() - started


def run_isolated(records: int, repeats: int) -> dict:
    """The cache's own CPU per request: the executor with an instant client, cache on (all misses) against off,
    alternately, best of `repeats` each; less exposed to the host's load than whole runs."""
    endpoint = SCENARIO.endpoints[0]
    base = with_cache(DatasetConfig.from_dict(SCENARIO.build({endpoint.provider: "http://127.0.0.1:9/v1"})))
    base = with_cache(base, mode="readwrite")
    off, on = [], []
    with tempfile.TemporaryDirectory(prefix="rowloom-cache-") as caches:
        run_loop(executor_cpu_s(base, 500, None))  # warm-up
        for attempt in range(repeats):
            off.append(run_loop(executor_cpu_s(base, records, None)))
            on.append(run_loop(executor_cpu_s(base, records, Path(caches) / f"iso-{attempt}")))
    return {
        "requests": records,
        "executor_cpu_ms_per_request_cache_off": round(1000 * min(off) / records, 4),
        "executor_cpu_ms_per_request_cache_on_all_misses": round(1000 * min(on) / records, 4),
        "cache_cpu_ms_per_request": round(1000 * (min(on) - min(off)) / records, 4),
    }


def build_cache(folder: Path, entries: int) -> list[bytes]:
    """`entries` replies of ~400 bytes written straight into a cache file (what a store would hold); their keys."""
    rng = random.Random(17)
    words = ["alpha", "ridge", "quartz", "maple", "delta", "fern", "summit", "harbor", "lantern", "meadow"]
    store = ReplyStore(folder, max_bytes=2**40)  # creates the schema
    store.close()
    keys = []
    now = time.time()
    with sqlite3.connect(folder / FILE_NAME, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for start in range(0, entries, 50_000):
            rows = []
            for _ in range(min(50_000, entries - start)):
                key = rng.randbytes(16)
                text = " ".join(rng.choice(words) for _ in range(60))
                rows.append(stored_row(key, ChatResponse(text, Usage(120, 60)), now))
                keys.append(key)
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO replies ({COLUMNS}) VALUES {ROW}", rows)
            db.execute("COMMIT")
    return keys


def run_lookups(entries: int, lookups: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rowloom-cache-1m-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        keys = build_cache(folder, entries)
        built_s = time.monotonic() - started
        size = os.path.getsize(folder / FILE_NAME)
        rng = random.Random(5)
        asked = [rng.choice(keys) if rng.random() < 0.9 else rng.randbytes(16) for _ in range(lookups)]
        store = ReplyStore(folder, max_bytes=2**40, writable=False)  # read only: no LRU touches in the timing
        times, found = [], 0
        for key in asked:
            t0 = time.perf_counter()
            reply = store.get(key)
            times.append(time.perf_counter() - t0)
            found += reply is not None
        store.close()
    times.sort()
    return {
        "entries": entries,
        "file_mb": round(size / 2**20, 1),
        "build_s": round(built_s, 1),
        "lookups": lookups,
        "found": found,
        "lookup_ms_p50": round(1000 * statistics.median(times), 4),
        "lookup_ms_p99": round(1000 * times[int(0.99 * len(times))], 4),
        "lookup_ms_max": round(1000 * times[-1], 4),
        "bound_p99_ms": 1.0,
        "within_bound": 1000 * times[int(0.99 * len(times))] <= 1.0,
        "note": "cold page cache not forced: the file was just written, as after a run; checksum and decode included",
    }


def summary(result: dict, command: str) -> str:
    """The figures of `result` as a Markdown table, with the command that measured them."""
    whole, path, lookup = result["cpu_whole_runs"], result["cpu_cache_path"], result["lookup"]

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = [
        (
            "client CPU per request, cache off (whole 10k runs, best)",
            f"{whole['client_cpu_ms_per_request_cache_off']} ms",
            "",
        ),
        (
            "… cache on, every request a miss (best)",
            f"{whole['client_cpu_ms_per_request_cache_on_all_misses']} ms",
            "",
        ),
        ("… cache on, every request a hit", f"{whole['client_cpu_ms_per_request_cache_on_all_hits']} ms", ""),
        (
            f"paired on/off ratios of whole runs ({whole['repeats']} pairs; the host drifts between runs)",
            ", ".join(f"{r:.3f}" for r in whole["paired_ratios"]) + f"; median **{whole['overhead']:+.1%}**",
            f"≤ +5%: {met(whole['within_bound'])}",
        ),
        (
            "the cache's own CPU per request (executor, instant client, all misses; best of "
            f"{2 * whole['repeats'] + 1} on and off)",
            f"{path['cache_cpu_ms_per_request']} ms = **{path['share_of_client_cpu']:.1%}** of the client's",
            f"≤ 5%: {met(path['within_bound'])}",
        ),
        (
            f"lookup at {lookup['entries']:,} entries ({lookup['file_mb']} MB file, {lookup['lookups']:,} lookups)",
            f"p50 {lookup['lookup_ms_p50']} ms, **p99 {lookup['lookup_ms_p99']} ms**",
            f"p99 ≤ 1 ms: {met(lookup['within_bound'])}",
        ),
    ]
    lines = [
        f"# Reply cache overhead ({result['scenario']}, {whole['records']:,} records)",
        "",
        f"`{command}` — Python {result['python']}, SQLite {result['sqlite']}, {result['machine']}, "
        f"{os.cpu_count()} CPUs, host load (1 min) {result['host_load_1m']['start']} at the start, "
        f"{result['host_load_1m']['end']} at the end",
        "",
        "| measured | result | issue 17's bound |",
        "| --- | --- | --- |",
        *(f"| {what} | {value} | {bound} |" for what, value, bound in rows),
        "",
        f"Whole runs, client CPU seconds: off {whole['all_runs_cpu_s']['off']}, on {whole['all_runs_cpu_s']['on']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "cache_overhead.json")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]  # other jobs on the host: the figures are CPU time, but caches are shared
    whole = run_overhead(args.records, args.repeats)
    isolated = run_isolated(args.records, 2 * args.repeats + 1)
    share = isolated["cache_cpu_ms_per_request"] / whole["client_cpu_ms_per_request_cache_off"]
    isolated.update(share_of_client_cpu=round(share, 4), bound=0.05, within_bound=share <= 0.05)
    result = {
        "scenario": SCENARIO.name,
        "cpu_whole_runs": whole,
        "cpu_cache_path": isolated,
        "lookup": run_lookups(args.entries, args.lookups),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "host_load_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
    }
    write_result(args.output, result, summary)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
