"""`rowloom bench scale`: the engine's own cost at scale (issue #19), with an instant client instead of HTTP.

The real plan, scheduler, task admission, request admission, executor, generators and Parquet writer run in one
process; every provider's client is `InstantClient`, which answers at once (after one `asyncio.sleep(0)`, so the
interleaving of tasks stays real). What is measured is therefore rowloom's CPU per task, not the HTTP stack's
(`rowloom bench -s large_overhead` measures that). Two workloads: the chain of three LLM text columns at 10k, 100k
and 1M records, and a fan-out of 50 LLM text columns (each reads only the samplers) at 2,000 records. Each run
is a process of its own (its peak RSS is its own), runs alternate between variants, and each figure is the
median of its runs. These send no request anywhere.

The client's CPU per request, the issue's last target, is an HTTP figure: the same chain at `http_records`
against the zero-latency simulator in a process of its own on 127.0.0.1 (after a warm-up job, as the scenario
runner does), beside the simulator's own CPU per request it answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: An address no request goes to: the instant client replaces every provider's HTTP client.
_UNUSED_URL = "http://127.0.0.1:9/v1"
_CAPACITY = 64
_REPLY = "A short reply of about a dozen words, the length of a brief answer to a question."


class InstantClient:
    """A `ChatClient` that answers every chat request at once with a fixed text and its usage."""

    async def chat(self, request: Any) -> Any:
        from rowloom.models.types import ChatResponse, Usage

        await asyncio.sleep(0)  # a real client yields at least once: keep the scheduler's interleaving
        return ChatResponse(_REPLY, Usage(prompt_tokens=20, completion_tokens=16), finish_reason="stop")

    async def embed(self, model: str, inputs: list[str]) -> Any:
        raise NotImplementedError("the scale benchmark's workloads have no embedding column")

    async def aclose(self) -> None:
        return None


def _instant_factory(provider: Any, api_key: str | None) -> InstantClient:
    return InstantClient()


_SAMPLERS: list[dict[str, Any]] = [
    {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "maritime law", "jazz"]},
    {"name": "difficulty", "type": "uniform", "low": 1, "high": 5, "integer": True},
]


def _llm(name: str, prompt: str) -> dict[str, Any]:
    return {"name": name, "type": "llm_text", "model": "writer", "prompt": prompt}


def chain() -> list[dict[str, Any]]:
    """Three chained LLM text columns: question -> answer -> review."""
    return [
        _llm("question", "Write one question about {{ topic }} at difficulty {{ difficulty }}/5."),
        _llm("answer", "Answer: {{ question }}"),
        _llm("review", "Grade {{ answer }} to {{ question }}."),
    ]


def fan_out(width: int = 50) -> list[dict[str, Any]]:
    """`width` LLM text columns, each reading only the samplers: every one is ready as soon as its row is."""
    return [
        _llm(f"fact_{i:02d}", f"Fact {i} about {{{{ topic }}}} at level {{{{ difficulty }}}}.") for i in range(width)
    ]


#: workload -> its LLM columns
WORKLOADS: dict[str, Callable[[], list[dict[str, Any]]]] = {"chain3": chain, "fanout50": fan_out}


def config_dict(workload: str, *, fixed_limit: int | None = None) -> dict[str, Any]:
    """The dataset config of `workload`: one model of 64 parallel requests, row groups of 1,000 (the large
    scenarios' settings), the reply cache off. `fixed_limit`: the model's limit stays at that many requests
    instead of adapting.

    Against the instant client the adaptive limit reads the event loop's own lag as the server's queueing (the
    round trip grows in proportion to the load) and settles at a few requests, where each dispatch pass starts a
    task or two; a fixed limit keeps the work per pass, and a run's instructions, the same from run to run."""
    admission = {"request_admission": {"algorithm": "fixed"}} if fixed_limit else {}
    return {
        "providers": [{"name": "sim", "base_url": _UNUSED_URL}],
        "models": [
            {
                "alias": "writer",
                "provider": "sim",
                "model": "sim-small",
                "max_parallel_requests": fixed_limit or _CAPACITY,
                "inference": {"temperature": 0.7, "max_tokens": 64},
            }
        ],
        "columns": [*_SAMPLERS, *WORKLOADS[workload]()],
        "run": {
            "row_group_size": 1000,
            "seed": 1,
            "max_row_groups_in_flight": 10,
            "cache": {"mode": "off"},
            **admission,
        },
    }


def run_one(
    workload: str, records: int, folder: Path, *, http: bool = False, fixed_limit: int | None = None
) -> dict[str, Any]:
    """One job of `workload` in this process, writing its rows and its event log (`events.jsonl`, as
    `rowloom create --events` does) into `folder`: CPU per task (the whole process, and the scheduler's dispatch
    pass alone), wall time, peak RSS. `http`: against the zero-latency simulator instead of the instant client;
    `fixed_limit`: see `config_dict`."""
    if not http:
        return _run_one(workload, records, folder, _instant_factory, fixed_limit=fixed_limit)
    from rowloom.bench.sim_config import SimulatorConfig
    from rowloom.bench.sim_process import SimulatorProcess

    with SimulatorProcess(SimulatorConfig(capacity=_CAPACITY, latency_s=0.0)) as sim:
        figures = _run_one(workload, records, folder, None, sim, fixed_limit=fixed_limit)
        served = sim.stats()
    server_ms = 1000 * float(served["cpu_s"]) / max(1, int(served["requests_total"]))
    return {
        **figures,
        "server_cpu_ms_per_request": round(server_ms, 4),
        "client_cpu_over_server": round(figures["cpu_ms_per_request"] / server_ms, 3) if server_ms else None,
    }


def _run_one(
    workload: str, records: int, folder: Path, factory: Any, sim: Any = None, *, fixed_limit: int | None = None
) -> dict[str, Any]:
    from rowloom.concurrency.loops import run as run_loop
    from rowloom.config import DatasetConfig
    from rowloom.engine.job import run_job
    from rowloom.observe.sinks import JsonlSink

    data = config_dict(workload, fixed_limit=fixed_limit)
    if sim is not None:
        data["providers"][0]["base_url"] = sim.base_url
    config = DatasetConfig.from_dict(data)
    if sim is not None:  # imports, the connection pool and one-time set-up are not per-request costs
        run_loop(run_job(config, 50, output=None, client_factory=factory))
        sim.reset()
    dispatch = {"cpu_s": 0.0, "passes": 0}

    def instrument(scheduler: Any, _stats: Any) -> None:
        """Time the scheduler's dispatch pass (select -> admit -> start a task), wherever the loop calls it."""
        inner = scheduler._dispatch

        def timed() -> None:
            start = time.process_time()
            inner()
            dispatch["cpu_s"] += time.process_time() - start
            dispatch["passes"] += 1

        scheduler._dispatch = timed

    folder.mkdir(parents=True, exist_ok=True)
    sink = JsonlSink(folder / "events.jsonl")
    cpu, started = time.process_time(), time.monotonic()
    try:
        result = run_loop(
            run_job(config, records, output=folder, sink=sink, on_start=instrument, client_factory=factory)
        )
    finally:
        sink.close()
    cpu, wall = time.process_time() - cpu, time.monotonic() - started
    summary = result.summary
    requests = summary["requests"]["total"]
    tasks = records * len(WORKLOADS[workload]())  # LLM cell tasks (the samplers' are one per row group)
    return {
        "workload": workload,
        "client": "instant" if sim is None else "http",
        "limit": f"fixed at {fixed_limit}" if fixed_limit else "adaptive",
        "records": records,
        "records_written": summary["records_written"],
        "rows_dropped": summary["rows_dropped"],
        "requests": requests,
        "tasks": tasks,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_task": round(1000 * cpu / tasks, 4),
        "cpu_ms_per_request": round(1000 * cpu / max(1, requests), 4),
        "dispatch_cpu_ms_per_task": round(1000 * dispatch["cpu_s"] / tasks, 4),
        "dispatch_passes": dispatch["passes"],
        "events_mb": round((folder / "events.jsonl").stat().st_size / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


# `rowloom report FOLDER` in a process of its own, printing its peak RSS (KiB on Linux) when it is done.
_REPORT = (
    "import resource, sys\n"
    "from rowloom.interface.cli import main\n"
    "sys.argv = ['rowloom', 'report', sys.argv[1]]\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def _child(command: list[str], src: Path | None = None) -> str:
    """Run `command` (a Python process) with `src` first on its path; its last line of output."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def measure(
    workload: str, records: int, *, src: Path | None = None, report: bool = False, http: bool = False
) -> dict[str, Any]:
    """`run_one` in a fresh process (its peak RSS is its own), its output in a temporary folder removed after.
    `src`: import rowloom from that source tree (an older checkout) instead, this file running as the script.
    `report`: then render the run's report in another process and add its wall time and peak RSS. `http`: against
    the zero-latency simulator."""
    with tempfile.TemporaryDirectory(prefix=f"rowloom-bench-scale-{workload}-") as tmp:
        folder = Path(tmp) / "data"
        script = ["-m", "rowloom.bench.scale"] if src is None else [str(Path(__file__).resolve())]
        command = [sys.executable, *script, workload, str(records), str(folder), *(["--http"] if http else [])]
        figures = json.loads(_child(command, src))
        if report:
            started = time.monotonic()
            peak_kib = int(_child([sys.executable, "-c", _REPORT, str(folder)]))
            figures["report"] = {
                "events_mb": figures["events_mb"],
                "wall_s": round(time.monotonic() - started, 1),
                "peak_rss_mb": round(peak_kib / 1024, 1),
            }
    return figures


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over `runs`, beside the runs themselves."""
    keys = ("wall_s", "cpu_ms_per_task", "cpu_ms_per_request", "dispatch_cpu_ms_per_task", "peak_rss_mb")
    return {
        "records": runs[0]["records"],
        "tasks": runs[0]["tasks"],
        **{key: _median(runs, key) for key in keys},
        "load_avg_1m": [r["load_avg_1m"] for r in runs],
        "runs": runs,
    }


def dispatch_pair(
    *, chain_records: int, fan_out_records: int, repeats: int, src: Path | None = None, log: Callable[[str], None]
) -> dict[str, Any]:
    """The chain's and the fan-out's dispatch cost per task, alternating, on this code or on `src`'s."""
    chain_runs: list[dict[str, Any]] = []
    fan_runs: list[dict[str, Any]] = []
    for i in range(repeats):
        for workload, records, runs in (("chain3", chain_records, chain_runs), ("fanout50", fan_out_records, fan_runs)):
            runs.append(measure(workload, records, src=src))
            log(f"{'' if src is None else f'[{src}] '}{workload} × {records:,} ({i + 1}/{repeats}): {_line(runs[-1])}")
    chain, fan = _summary(chain_runs), _summary(fan_runs)
    return {
        "chain3": chain,
        "fanout50": fan,
        "dispatch_ratio": round(fan["dispatch_cpu_ms_per_task"] / chain["dispatch_cpu_ms_per_task"], 3),
        "cpu_ratio": round(fan["cpu_ms_per_task"] / chain["cpu_ms_per_task"], 3),
    }


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['cpu_ms_per_task']} ms CPU/task, dispatch {r['dispatch_cpu_ms_per_task']} ms/task, "
        f"{r['wall_s']} s, peak RSS {r['peak_rss_mb']} MB, load {r['load_avg_1m']}"
    )


def run(
    *,
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    fan_out_records: int = 2_000,
    repeats: int = 2,
    large_repeats: int = 1,
    http_records: int = 100_000,
    against: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The chain at each of `sizes` (all but the largest `repeats` times, the largest `large_repeats` times, its
    first run's log reported on) and the fan-out beside the smallest chain, alternating; then the chain at
    `http_records` over HTTP `repeats` times (none when 0). `against`: an older checkout's `src`, whose dispatch
    costs are measured the same way (the before of a before/after)."""
    *smaller, largest = sorted(sizes)
    pair = dispatch_pair(chain_records=sizes[0], fan_out_records=fan_out_records, repeats=repeats, log=log)
    chains: dict[int, list[dict[str, Any]]] = {sizes[0]: pair["chain3"]["runs"]}
    for records in smaller[1:]:
        for i in range(repeats):
            chains.setdefault(records, []).append(measure("chain3", records))
            log(f"chain3 × {records:,} ({i + 1}/{repeats}): {_line(chains[records][-1])}")
    for i in range(large_repeats):
        chains.setdefault(largest, []).append(measure("chain3", largest, report=i == 0))
        log(f"chain3 × {largest:,} ({i + 1}/{large_repeats}): {_line(chains[largest][-1])}")
    report = chains[largest][0]["report"]
    log(f"report of the {largest:,}-record log ({report['events_mb']} MB): peak RSS {report['peak_rss_mb']} MB")
    http_runs = []
    for i in range(repeats if http_records else 0):
        http_runs.append(measure("chain3", http_records, http=True))
        log(f"chain3 × {http_records:,} over HTTP ({i + 1}/{repeats}): {_line(http_runs[-1])}")
    document: dict[str, Any] = {
        "host_cpus": os.cpu_count(),
        "sizes": sorted(sizes),
        "fan_out_records": fan_out_records,
        "chain3": {str(records): _summary(runs) for records, runs in sorted(chains.items())},
        "fanout50": pair["fanout50"],
        "dispatch_ratio": pair["dispatch_ratio"],
        "report": report,
    }
    if http_runs:
        document["http"] = {
            **_summary(http_runs),
            "server_cpu_ms_per_request": _median(http_runs, "server_cpu_ms_per_request"),
            "client_cpu_over_server": _median(http_runs, "client_cpu_over_server"),
        }
    if against is not None:
        before = dispatch_pair(
            chain_records=sizes[0], fan_out_records=fan_out_records, repeats=repeats, src=against, log=log
        )
        document["before"] = {"src": str(against), **before}
    document["checks"] = checks(document)
    return document


#: The CPU per request that issue #19 asks of the client, over HTTP; reported, not held.
CLIENT_CPU_MS_PER_REQUEST = 0.35


def checks(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #19's scale scenarios: its figure, its bound, whether it is met and whether
    `--check` holds it (the client's CPU per request is an HTTP figure this benchmark does not measure)."""
    chains = document["chain3"]
    sizes = [int(size) for size in chains]
    smallest, largest = chains[str(sizes[0])], chains[str(sizes[-1])]
    reference = chains[str(100_000 if 100_000 in sizes[:-1] else sizes[max(0, len(sizes) - 2)])]
    last = largest["runs"][0]
    growth = max(chains[str(n)]["cpu_ms_per_task"] / smallest["cpu_ms_per_task"] for n in sizes) - 1
    shrink = 1 - min(chains[str(n)]["cpu_ms_per_task"] / smallest["cpu_ms_per_task"] for n in sizes)
    rss_ratio = largest["peak_rss_mb"] / reference["peak_rss_mb"]
    rows = [
        (
            "completes: every row of the largest run written, none dropped",
            f"{last['records_written']:,} written, {last['rows_dropped']} dropped",
            last["records_written"] == last["records"] and not last["rows_dropped"],
        ),
        (
            f"peak RSS of {sizes[-1]:,} records <= 1.2 x {reference['records']:,} records'",
            f"{rss_ratio:.3f} x ({largest['peak_rss_mb']} / {reference['peak_rss_mb']} MB)",
            rss_ratio <= 1.2,
        ),
        (
            f"CPU per task flat (+-15%) from {sizes[0]:,} to {sizes[-1]:,} records",
            f"+{growth:.1%} / -{shrink:.1%}",
            growth <= 0.15 and shrink <= 0.15,
        ),
        (
            "50-column fan-out's dispatch CPU per task <= 1.5 x the 3-column chain's",
            f"{document['dispatch_ratio']} x",
            document["dispatch_ratio"] <= 1.5,
        ),
        (
            f"report of the {sizes[-1]:,}-record event log in <= 1 GB RSS",
            f"{document['report']['peak_rss_mb']} MB ({document['report']['events_mb']} MB log)",
            document["report"]["peak_rss_mb"] <= 1024,
        ),
    ]
    result = [{"target": t, "figure": f, "met": bool(m), "held": True} for t, f, m in rows]
    engine = largest["cpu_ms_per_request"]
    http = document.get("http")
    client = engine if http is None else http["cpu_ms_per_request"]
    result.append(
        {
            "target": f"client CPU <= {CLIENT_CPU_MS_PER_REQUEST} ms per request "
            + ("(no HTTP run: the engine's alone)" if http is None else f"(over HTTP, {http['records']:,} records)"),
            "figure": f"{client} ms"
            + (
                ""
                if http is None
                else f" (the simulator's {http['server_cpu_ms_per_request']} ms; engine alone {engine} ms)"
            ),
            "met": client <= CLIENT_CPU_MS_PER_REQUEST,
            "held": False,
        }
    )
    return result


def failed_checks(document: dict[str, Any]) -> list[str]:
    """The targets `--check` holds that `run`'s document does not meet."""
    return [f"{c['target']}: {c['figure']}" for c in document["checks"] if c["held"] and not c["met"]]


def markdown(document: dict[str, Any]) -> str:
    """The readable summary of `run`'s document."""
    lines = [
        "# rowloom bench scale: the engine's CPU and memory at scale, instant client (no HTTP); the client over HTTP",
        "",
        "Each run is a process of its own writing its Parquet files and event log; figures are medians of the runs "
        "(host load: the 1-minute load average after each run).",
        "",
        "| workload | records | tasks | runs | wall s | CPU ms/task | dispatch ms/task | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("chain3", s) for s in document["chain3"].values()] + [("fanout50", document["fanout50"])]
    if "http" in document:
        rows.append(("chain3 over HTTP", document["http"]))
    if "before" in document:
        rows += [(f"{w} (before)", document["before"][w]) for w in ("chain3", "fanout50")]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['records']:,} | {s['tasks']:,} | {len(s['runs'])} | {s['wall_s']} | {s['cpu_ms_per_task']} "
            f"| {s['dispatch_cpu_ms_per_task']} | {s['peak_rss_mb']} | {', '.join(map(str, s['load_avg_1m']))} |"
        )
    report = document["report"]
    lines += [
        "",
        f"Dispatch CPU per task, 50 columns ÷ 3 columns: {document['dispatch_ratio']}"
        + (
            f" (before: {document['before']['dispatch_ratio']}, {document['before']['src']})"
            if "before" in document
            else ""
        )
        + ".",
        f"Report of the largest run's event log ({report['events_mb']} MB): {report['wall_s']} s, "
        f"peak RSS {report['peak_rss_mb']} MB.",
        "",
        "| target | figure | met | held by --check |",
        "|---|---|---|---|",
    ]
    for c in document["checks"]:
        lines.append(
            f"| {c['target']} | {c['figure']} | {'yes' if c['met'] else 'NO'} | {'yes' if c['held'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """`python -m rowloom.bench.scale WORKLOAD RECORDS FOLDER [--http] [--fixed-limit N]`: one run; its figures as
    a JSON line."""
    parser = argparse.ArgumentParser(prog="python -m rowloom.bench.scale", description=main.__doc__)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("records", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--http", action="store_true", help="against the zero-latency simulator")
    parser.add_argument("--fixed-limit", type=int, metavar="N", help="the model's limit fixed at N requests")
    args = parser.parse_args(argv)
    if args.fixed_limit is not None and args.fixed_limit < 1:
        parser.error("--fixed-limit: give a positive number of requests")
    print(json.dumps(run_one(args.workload, args.records, args.folder, http=args.http, fixed_limit=args.fixed_limit)))


if __name__ == "__main__":
    main(sys.argv[1:])
