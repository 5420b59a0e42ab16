"""CPU cost per request as counted instructions: a measure the host's noise does not move.

    python benchmarks/instructions.py [--workload executor-off --workload executor-cache ...]
                                      [--requests 1000 3000] [--against OTHER/src] [--loop L]
                                      [--against-loop L] [--output ...]

CPU time on a shared 2-core host moves ±25% between runs minutes apart, more than the changes worth making to the
request path (the reply cache's whole miss path is ~6% of a request). Valgrind's callgrind counts the instructions
a process executes, in every thread, the same on every run to within ~0.3%. Each workload runs in a process of
its own under callgrind at two sizes; instructions per request are the difference over the difference in
requests, so start-up, imports and the first compilations cancel. Instructions are not time (a cache miss or a
system call costs more than an instruction, and the kernel's work is not counted): use this to compare code, and
CPU time (`cache_overhead.py`, `rowloom bench scale`) to state what a request costs.

Workloads (no network: the provider client answers in-process):
- `executor-off`, `executor-cache`: chat requests through the executor with an instant client, 64 at a time,
  each its own row's task, as `cache_overhead.py`'s isolated measure runs them; cache off, or on and empty (every
  request a miss: key, lookup, single flight, `cache_miss` event, stored by the writer thread).
- `run-off`, `run-cache`: a whole job of `cache_overhead.py`'s scenario (one LLM column, `large_overhead_10k`'s
  settings) over HTTP against the zero-latency simulator, which runs natively in a process of its own and is not
  counted; cache off, or on and empty; the request limit fixed at the model's 64 (the adaptive limits decide by
  the clock, which callgrind slows). Issue 17's bound in its own terms: the client's cost per request, whole run,
  cache on against off.
- `engine-chain3`: the whole engine on the three-column chain with the instant client (`rowloom bench scale`'s
  in-process run: plan, scheduler, both admission levels, executor, generators, Parquet, the JSONL event log);
  per request = per task. Its adaptive limit reads the loop's own lag as queueing and settles at a few requests,
  how few depending on the run's timing (which callgrind slows), and the work per dispatch pass with it: two
  counts of the same code can differ by several percent.
- `engine-chain3-fixed`: the same with the limit fixed (at 16 requests, `_FIXED_LIMIT`), as `run-off` fixes its
  own: the same count from run to run, the one to compare code by (the adaptive limit's own cost is then not in
  it).

`--against` runs every workload on another checkout's `src` as well, alternately, and reports the change;
`--against-loop` on another event loop (`ROWLOOM_EVENT_LOOP`: `asyncio`, `uvloop`), this checkout's unless `--against`
is given too; `--loop` chooses this side's (default: the environment's, i.e. asyncio's unless it says otherwise). Needs
`valgrind` on the PATH. Writes JSON to `--output` and a readable summary beside it (`.md`).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from written import write_result

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("executor-off", "executor-cache", "run-off", "run-cache", "engine-chain3", "engine-chain3-fixed")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
#: engine-chain3-fixed's request limit: below the task slots it gives (2 x 16 + 2), so some requests wait in
#: request admission and are handed a freed slot, as on an endpoint at its capacity
_FIXED_LIMIT = 16


def _child(workload: str, requests: int) -> None:
    """Run one workload in this process (under callgrind)."""
    if workload.startswith(("executor-", "run-")):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import cache_overhead

        from rowloom.concurrency.loops import run as run_loop
        from rowloom.config import DatasetConfig
        from rowloom.models.cache import store, with_cache

        # Callgrind runs the process ~50x slower: gather the writer's transactions over as many replies as a
        # native run's 1 s gathering holds, or the per-transaction cost would be counted against far fewer rows.
        store._GATHER_S = 60.0
        endpoint = cache_overhead.SCENARIO.endpoints[0]
        config = DatasetConfig.from_dict(cache_overhead.SCENARIO.build({endpoint.provider: "http://127.0.0.1:9/v1"}))
        config = with_cache(config, mode="readwrite")
        with tempfile.TemporaryDirectory(prefix="rowloom-instructions-") as folder:
            cache = None if workload.endswith("-off") else Path(folder) / "cache"
            if workload.startswith("executor-"):
                run_loop(cache_overhead.executor_cpu_s(config, requests, cache))
                return
            from rowloom.bench.sim_process import SimulatorProcess

            with SimulatorProcess(endpoint.sim) as sim:
                document = cache_overhead.SCENARIO.build({endpoint.provider: sim.base_url})
                # A fixed limit: the adaptive limits decide by the clock, and a process under callgrind sees its
                # own slowed timing; their decisions (the same work with the cache on or off) would add noise.
                document["run"]["request_admission"] = {"algorithm": "fixed"}
                base = DatasetConfig.from_dict(document)
                mode = {"mode": "off"} if cache is None else {"mode": "readwrite", "path": str(cache)}
                cache_overhead.run(with_cache(base, **mode), requests)
    elif workload in ("engine-chain3", "engine-chain3-fixed"):
        from rowloom.bench import scale

        with tempfile.TemporaryDirectory(prefix="rowloom-instructions-") as folder:
            fixed = _FIXED_LIMIT if workload.endswith("-fixed") else None
            scale.run_one("chain3", requests // 3, Path(folder), fixed_limit=fixed)
    else:
        raise SystemExit(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")


def count(workload: str, requests: int, src: Path, loop: str | None = None) -> int:
    """Instructions of one run of `workload` at `requests`, every thread, with `src` first on the path and `loop`
    (`ROWLOOM_EVENT_LOOP`: asyncio, uvloop; None leaves the environment's) as the run's event loop."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    if loop is not None:
        env["ROWLOOM_EVENT_LOOP"] = loop
    with tempfile.TemporaryDirectory(prefix="rowloom-callgrind-") as folder:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/callgrind.out",
            sys.executable,
            __file__,
            "--child",
            workload,
            str(requests),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{workload} at {requests} failed under callgrind:\n{done.stderr[-3000:]}")
    return int(found[-1])


def per_request(workload: str, sizes: tuple[int, int], src: Path, loop: str | None = None) -> dict:
    """Instructions per request of `workload` on `src` and `loop`: the two sizes run at once (two cores; counts do
    not care)."""
    with ThreadPoolExecutor(2) as pool:
        small, large = pool.map(lambda n: count(workload, n, src, loop), sizes)
    return {
        "instructions": {str(sizes[0]): small, str(sizes[1]): large},
        "per_request": round((large - small) / (sizes[1] - sizes[0])),
    }


def summary(result: dict, command: str) -> str:
    lines = [
        "# Instructions per request (callgrind)",
        "",
        f"`{command}` — Python {result['python']}, {result['machine']}; per request = the difference between the "
        f"runs at {result['sizes'][0]:,} and {result['sizes'][1]:,} requests over the difference in requests.",
        "",
    ]
    against = "against" in result
    this = "this checkout" + (f" ({result['loop']} loop)" if result.get("loop") else "")
    other = "other checkout" if "src" in result.get("against", {}) else "this checkout"
    other += f" ({result['against']['loop']} loop)" if result.get("against", {}).get("loop") else ""
    header = f"| workload | {this} |" + (f" {other} | change |" if against else "")
    lines += [header, "|---" * (4 if against else 2) + "|"]
    for name, figures in result["workloads"].items():
        row = f"| {name} | {figures['per_request']:,} |"
        if against:
            other = result["against"]["workloads"][name]["per_request"]
            row += f" {other:,} | {100 * (figures['per_request'] / other - 1):+.1f}% |"
        lines.append(row)
    work = result["workloads"]
    for kind, what in (("executor", "the reply cache's miss path"), ("run", "the whole run with the cache on")):
        if f"{kind}-off" not in work or f"{kind}-cache" not in work:
            continue
        off, on = work[f"{kind}-off"]["per_request"], work[f"{kind}-cache"]["per_request"]
        lines += [
            "",
            f"{what.capitalize()}: {on - off:,} instructions per request, {100 * (on / off - 1):+.1f}% of {kind}-off.",
        ]
        if against:
            other = result["against"]["workloads"]
            before = other[f"{kind}-cache"]["per_request"] - other[f"{kind}-off"]["per_request"]
            lines[-1] += f" On the other checkout: {before:,} ({100 * (on - off) / before - 100:+.1f}%)."
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "REQUESTS"), help=argparse.SUPPRESS)
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="default: every workload")
    parser.add_argument("--requests", type=int, nargs=2, default=[1000, 3000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--against", type=Path, help="another checkout's src, measured alternately")
    loops = ("asyncio", "uvloop")
    parser.add_argument("--loop", choices=loops, help="this side's event loop (default: the environment's)")
    parser.add_argument("--against-loop", choices=loops, help="the other side's event loop, measured alternately")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "instructions.json")
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on the PATH: install it (apt install valgrind) to count instructions")
    small, large = args.requests
    if not 0 < small < large:
        raise SystemExit(f"--requests {small} {large}: give two sizes, the smaller first, both above 0")
    sizes = (small, large)
    result: dict = {"sizes": list(sizes), "python": sys.version.split()[0], "machine": platform.machine()}
    result["workloads"] = {}
    if args.loop is not None:
        result["loop"] = args.loop
    other_src = args.against if args.against is not None else ROOT / "src"
    other_loop = args.against_loop if args.against_loop is not None else args.loop
    if args.against is not None or args.against_loop is not None:
        result["against"] = {"workloads": {}}
        if args.against is not None:
            result["against"]["src"] = str(args.against)
        if other_loop is not None:
            result["against"]["loop"] = other_loop
    for workload in args.workload or WORKLOADS:
        result["workloads"][workload] = per_request(workload, sizes, ROOT / "src", args.loop)
        print(f"{workload}: {result['workloads'][workload]['per_request']:,} instructions per request", flush=True)
        if "against" in result:
            result["against"]["workloads"][workload] = per_request(workload, sizes, other_src, other_loop)
            other = result["against"]["workloads"][workload]["per_request"]
            print(f"{workload} on {other_src} ({other_loop or 'default'} loop): {other:,} per request", flush=True)
    print(write_result(args.output, result, summary))


if __name__ == "__main__":
    main()
