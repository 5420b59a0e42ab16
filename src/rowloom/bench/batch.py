"""`rowloom bench batch`: batch-API execution at scale against the simulator's batch endpoints.

The chain workload (question → answer → review) runs with its batch columns sent through batches whose lines each
finish between half and all of `delay` seconds after their batch is created, and the rest online against a
hosted-style endpoint. Two variants: `answer` in batches (dependency depth 1), and `answer` and `review` in
batches (depth 2). Each is compared with the bound issue #18 sets: 2 × delay × depth + the online parts' time,
where the online parts' time is measured by the same job with the batch columns made free (an expression in
place of the model), so the bound leaves out nothing the batch run must also do. Every run is a process of its
own, so its peak RSS is its own; the simulator counts duplicate lines (a line billed twice). Talks to
127.0.0.1 only.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.concurrency.loops import run as run_loop

#: variant -> the chain's columns sent through batches
VARIANTS: dict[str, tuple[str, ...]] = {"depth1": ("answer",), "depth2": ("answer", "review")}
_LATENCY_S = 0.2
_CAPACITY = 64


def simulator(delay_s: float) -> SimulatorConfig:
    """A hosted-style endpoint (429 past 64 at once, 0.2 s per request) with batch lines finishing in
    [delay/2, delay]."""
    return SimulatorConfig(latency_s=_LATENCY_S, capacity=_CAPACITY, batch_delay_s=delay_s, models=("sim-small",))


def workload(base_url: str, batched: tuple[str, ...], *, free: bool = False) -> dict[str, Any]:
    """The chain with the `batched` columns on a batch model (or, `free`, computed without a model)."""
    online = {"alias": "writer", "provider": "sim", "model": "sim-small", "max_parallel_requests": _CAPACITY}
    batch = {
        "alias": "batcher",
        "provider": "sim",
        "model": "sim-small",
        "execution": "batch",
        "batch": {"flush_after_s": 5, "poll_min_s": 1, "poll_max_s": 5},
    }
    for model in (online, batch):
        model["inference"] = {"temperature": 0.7, "max_tokens": 64}
    prompts = {
        "question": "Write one question about {{ topic }} at difficulty {{ difficulty }}/5.",
        "answer": "Answer: {{ question }}",
        "review": "Grade {{ answer }} to {{ question }}.",
    }
    columns: list[dict[str, Any]] = [
        {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "maritime law", "jazz"]},
        {"name": "difficulty", "type": "uniform", "low": 1, "high": 5, "integer": True},
    ]
    for name, prompt in prompts.items():
        if name in batched and free:
            columns.append({"name": name, "type": "expression", "expr": prompt})
        else:
            model = "batcher" if name in batched else "writer"
            columns.append({"name": name, "type": "llm_text", "model": model, "prompt": prompt})
    return {
        "providers": [{"name": "sim", "base_url": base_url}],
        "models": [online, *([] if free else [batch])],
        "columns": columns,
        "run": {"row_group_size": 100, "seed": 1, "cache": {"mode": "off"}},
    }


def run_one(base_url: str, variant: str, records: int, *, free: bool) -> dict[str, Any]:
    """One job of `variant` in this process: its wall time, summary figures and this process's peak RSS."""
    from rowloom.config import DatasetConfig
    from rowloom.engine.job import run_job

    config = DatasetConfig.from_dict(workload(base_url, VARIANTS[variant], free=free))
    with tempfile.TemporaryDirectory(prefix=f"rowloom-bench-batch-{variant}-") as out:
        started = time.monotonic()
        result = run_loop(run_job(config, records, output=Path(out) / "data"))
        wall = time.monotonic() - started
    summary = result.summary
    return {
        "wall_s": round(wall, 2),
        "records_written": summary["records_written"],
        "rows_dropped": summary["rows_dropped"],
        "online_requests": summary["requests"]["total"],
        "batches": summary.get("batches", {}).get("batcher", {}),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _in_process(base_url: str, variant: str, records: int, *, free: bool) -> dict[str, Any]:
    """`run_one` in a fresh Python process (its peak RSS is that job's alone)."""
    command = [sys.executable, "-m", "rowloom.bench.batch", base_url, variant, str(records)]
    done = subprocess.run(command + (["--free"] if free else []), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench batch {variant} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(*, records: int = 10_000, delay_s: float = 20.0, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every variant: the batch run and its online-parts run, against one simulator each, and the bound."""
    from rowloom.bench.sim_process import SimulatorProcess

    results: dict[str, Any] = {}
    for variant, batched in VARIANTS.items():
        with SimulatorProcess(simulator(delay_s)) as sim:
            log(f"{variant}: {records} records, {', '.join(batched)} in batches of lines finishing in ≤ {delay_s} s")
            batch = _in_process(sim.base_url, variant, records, free=False)
            stats = sim.stats().get("batches", {})
        with SimulatorProcess(simulator(delay_s)) as sim:
            log(f"{variant}: the online parts alone")
            online = _in_process(sim.base_url, variant, records, free=True)
        bound = 2 * delay_s * len(batched) + online["wall_s"]
        results[variant] = {
            "batched_columns": list(batched),
            "depth": len(batched),
            "batch_run": batch,
            "online_parts_run": online,
            "bound_s": round(bound, 2),
            "wall_over_bound": round(batch["wall_s"] / bound, 3),
            "simulator": {k: stats.get(k) for k in ("batches_created", "lines_submitted", "duplicate_lines")},
        }
        log(f"{variant}: {batch['wall_s']} s against a bound of {bound:.1f} s, peak RSS {batch['peak_rss_mb']} MB")
    return {"records": records, "delay_s": delay_s, "variants": results}


#: What `rowloom bench batch --check` holds every variant to: within the bound, no line billed twice, every row
#: written, and the memory bound the other large scenarios keep (`guardrails.yaml`'s memory_20k).
CHECKS: dict[str, Callable[[dict[str, Any], int], bool]] = {
    "wall within 2 x delay x depth + online parts": lambda v, _: v["wall_over_bound"] <= 1.0,
    "no duplicate line": lambda v, _: v["simulator"]["duplicate_lines"] == 0,
    "every row written": lambda v, records: v["batch_run"]["records_written"] == records,
    "peak RSS <= 400 MB": lambda v, _: v["batch_run"]["peak_rss_mb"] <= 400,
}


def failed_checks(document: dict[str, Any]) -> list[str]:
    """`variant: check` for every check a variant of `run`'s document fails."""
    return [
        f"{name}: {check}"
        for name, variant in document["variants"].items()
        for check, holds in CHECKS.items()
        if not holds(variant, document["records"])
    ]


def markdown(document: dict[str, Any]) -> str:
    """The readable summary of `run`'s document."""
    lines = [
        f"# rowloom bench batch: {document['records']:,} records, batch lines finishing in "
        f"[{document['delay_s'] / 2:g}, {document['delay_s']:g}] s",
        "",
        "Bound (issue #18): 2 × delay × depth + the online parts' time (the same job with the batch columns "
        "computed without a model).",
        "",
        "| variant | batch columns | wall s | online parts s | bound s | wall ÷ bound | batches | lines "
        "| duplicate lines | rows written | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in document["variants"].items():
        batch, sim = v["batch_run"], v["simulator"]
        lines.append(
            f"| {name} | {', '.join(v['batched_columns'])} | {batch['wall_s']} | {v['online_parts_run']['wall_s']} "
            f"| {v['bound_s']} | {v['wall_over_bound']} | {sim['batches_created']} | {sim['lines_submitted']} "
            f"| {sim['duplicate_lines']} | {batch['records_written']} | {batch['peak_rss_mb']} |"
        )
    failed = failed_checks(document)
    lines += ["", f"Checks ({', '.join(CHECKS)}): " + ("; ".join(f"FAILED {f}" for f in failed) or "all hold.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """`python -m rowloom.bench.batch BASE_URL VARIANT RECORDS [--free]`: one run; its figures as a JSON line."""
    base_url, variant, records = argv[0], argv[1], int(argv[2])
    print(json.dumps(run_one(base_url, variant, records, free="--free" in argv[3:])))


if __name__ == "__main__":
    main(sys.argv[1:])
