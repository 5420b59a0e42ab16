"""Where a reply cache's CPU goes in whole runs: the event loop's thread against the other threads.

Runs the large scenario (10k records, one LLM column, zero-latency simulator in its own process) with the cache
off and then on into an empty folder, `--pairs` times, in `--mode` (`readwrite`: every request a miss, looked up
and stored; `read`: looked up only, nothing stored, so the writer thread stays idle). Reports per run the process
CPU, the event loop thread's own CPU (`time.thread_time`) and the rest (the cache's writer, the event log's).

    python benchmarks/cache_threads.py [--mode readwrite|read] [--pairs 2] [--records 10000] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache_overhead import SCENARIO, with_cache


def run(config: DatasetConfig, records: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rowloom-cache-threads-") as tmp:
        process, loop_thread = time.process_time(), time.thread_time()
        run_loop(run_job(config, records, output=Path(tmp) / "out"))
        process, loop_thread = time.process_time() - process, time.thread_time() - loop_thread
    return {
        "process_s": round(process, 3),
        "loop_thread_s": round(loop_thread, 3),
        "others_s": round(process - loop_thread, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("readwrite", "read"), default="readwrite")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    endpoint = SCENARIO.endpoints[0]
    runs = []
    with SimulatorProcess(endpoint.sim) as sim, tempfile.TemporaryDirectory(prefix="rowloom-cache-") as caches:
        base = DatasetConfig.from_dict(SCENARIO.build({endpoint.provider: sim.base_url}))
        off = with_cache(base, mode="off")
        run(off, 200)  # warm-up: imports, connection pool
        for pair in range(args.pairs):
            on = with_cache(base, mode=args.mode, path=str(Path(caches) / f"c{pair}"))
            for name, config in (("off", off), (args.mode, on)):
                figures = {"cache": name, **run(config, args.records)}
                runs.append(figures)
                print(json.dumps(figures), flush=True)
    if args.output is not None:
        args.output.write_text(json.dumps({"records": args.records, "mode": args.mode, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
