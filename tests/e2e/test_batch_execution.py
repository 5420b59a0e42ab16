"""Batch-API execution end to end against the simulator over real sockets: the chain example with `answer` sent
through batches while `question` and `review` run online; batches and lines exactly as planned; a downstream
batch column submitted row group by row group while the first one's batches still run; failed and expired lines
sent again, then online or dropped by reason, with the counts in the summary; batch prices in the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import JobResult, run_job
from rowloom.models.batch.runner import BatchApiRefused
from rowloom.observe.report import render_report
from rowloom.observe.sinks import MemorySink

from .helpers import chain_dict

PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 4.0, "batch_discount": 0.5}


def of(sink: MemorySink, kind: str, alias: str) -> list[Any]:
    """The events of `kind` about model `alias`."""
    return [e for e in sink.events if e.kind == kind and getattr(e, "alias", None) == alias]


@contextlib.asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorConfig(**settings)) as sim:
        yield sim


async def sim_stats(sim: SimulatorServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{sim.port}/stats") as response:
        return await response.json()


def batch_chain(base_url: str, columns: dict[str, str], batch: dict[str, Any], **run: Any) -> DatasetConfig:
    """The chain example with a batch model `batcher` (and `batcher2`) that the `columns` named map to."""
    data = chain_dict(base_url, **run)
    data["models"][0]["pricing"] = PRICES
    fast = {"poll_min_s": 0.1, "poll_max_s": 0.5, **batch}
    for alias in ("batcher", "batcher2"):
        data["models"].append(
            {
                "alias": alias,
                "provider": "sim",
                "model": "sim-small",
                "execution": "batch",
                "inference": {"temperature": 0.7, "max_tokens": 128},
                "pricing": PRICES,
                "batch": fast,
            }
        )
    for column in data["columns"]:
        if column["name"] in columns:
            column["model"] = columns[column["name"]]
    return DatasetConfig.from_dict(data)


async def run(config: DatasetConfig, n: int, out: Path, sink: MemorySink | None = None) -> JobResult:
    return await run_job(config, n, output=out, sink=sink)


async def test_the_chain_with_answer_in_batches_completes_with_the_batches_and_lines_planned(tmp_path: Path):
    async with simulator(batch_delay_s=0.3) as sim:
        # Flushed by count only: 200 answers are exactly two full batches of 100.
        config = batch_chain(sim.base_url, {"answer": "batcher"}, {"max_requests": 100, "flush_after_s": 3600})
        result = await run(config, 200, tmp_path / "out")
        stats = await sim_stats(sim)
    table = result.to_arrow()
    assert table.num_rows == 200 and result.summary["rows_dropped"] == 0
    assert all(table.column("answer").to_pylist()) and all(table.column("review").to_pylist())
    assert stats["batches"]["batches_created"] == 2 and stats["batches"]["lines_submitted"] == 200
    assert stats["batches"]["duplicate_lines"] == 0
    assert stats["by_path"]["/v1/chat/completions"] == 400  # question and review, online
    batches = result.summary["batches"]["batcher"]
    assert batches["batches_submitted"] == 2 and batches["lines_submitted"] == 200
    assert batches["requests_answered"] == 200 and batches.get("requests_failed", 0) == 0
    # The ledger prices batch lines at half the online price, under their own endpoint key.
    ledger = result.summary["ledger"]
    batched, online = ledger["by_model"]["batcher"], ledger["by_model"]["writer"]
    assert batched["requests"] == 200 and online["requests"] == 400
    full = (batched["prompt_tokens"] * 1.0 + batched["completion_tokens"] * 4.0) / 1e6
    assert batched["cost"] == pytest.approx(full * 0.5)
    savings = ledger["batch_savings"]["batcher"]
    assert savings["cost_at_online_prices"] == pytest.approx(full, abs=1e-6)
    assert savings["saved"] == pytest.approx(full * 0.5, abs=1e-6)
    assert "batch:sim/sim-small" in ledger["by_endpoint"]
    assert (tmp_path / "out" / "batches.jsonl").read_text().count('"planned"') == 2
    page = render_report(tmp_path / "out").read_text()
    assert "batches of batcher" in page and "2 submitted (2 completed)" in page and "200 answered" in page


async def test_a_downstream_batch_column_is_submitted_row_group_by_row_group(tmp_path: Path):
    # Questions arrive over about a second (4 at a time); each answer batch waits 0.2 s to fill.
    async with simulator(batch_delay_s=0.6, latency_s=0.02) as sim:
        config = batch_chain(
            sim.base_url,
            {"answer": "batcher", "review": "batcher2"},
            {"flush_after_s": 0.2},
            row_group_size=25,
        )
        config.models[0].max_parallel_requests = 4
        sink = MemorySink()
        result = await run(config, 200, tmp_path / "out", sink)
    assert result.summary["records_written"] == 200
    answers = of(sink, "batch_finished", "batcher")
    reviews = of(sink, "batch_submitted", "batcher2")
    assert len(answers) >= 3 and len(reviews) >= 3
    # The first reviews went out while answers of later row groups were still in their batches.
    assert reviews[0].ts < max(e.ts for e in answers)
    assert sum(e.lines for e in reviews) == 200


async def test_lines_that_fail_in_every_batch_are_dropped_by_reason_and_counted(tmp_path: Path):
    async with simulator(batch_delay_s=0.1, batch_fail_rate=1.0) as sim:
        config = batch_chain(
            sim.base_url, {"answer": "batcher"}, {"flush_after_s": 0.1, "max_attempts": 2}, max_error_rate=1.0
        )
        result = await run(config, 20, tmp_path / "out")
        stats = await sim_stats(sim)
    summary = result.summary
    assert summary["records_written"] == 0 and summary["rows_dropped_by_reason"] == {"answer:server_error": 20}
    batches = summary["batches"]["batcher"]
    assert batches["lines_submitted"] == 40 and batches["lines_resubmitted"] == 20
    assert batches["requests_failed"] == 20 and batches["requests_failed_server_error"] == 20
    assert stats["batches"]["lines_submitted"] == 40 and stats["batches"]["duplicate_lines"] == 0


async def test_retry_online_answers_what_every_batch_failed(tmp_path: Path):
    async with simulator(batch_delay_s=0.1, batch_fail_rate=1.0) as sim:
        batch = {"flush_after_s": 0.1, "max_attempts": 1, "retry_online": True}
        result = await run(batch_chain(sim.base_url, {"answer": "batcher"}, batch), 20, tmp_path / "out")
        stats = await sim_stats(sim)
    assert result.summary["records_written"] == 20
    assert stats["by_path"]["/v1/chat/completions"] == 60  # question, review, and every answer online
    ledger = result.summary["ledger"]["by_endpoint"]
    assert ledger["sim/sim-small"]["requests"] == 60 and ledger["batch:sim/sim-small"]["requests"] == 20


async def test_expired_lines_go_again_and_without_attempts_left_are_dropped_as_not_run(tmp_path: Path):
    async with simulator(batch_delay_s=0.4, batch_expire_s=0.3, seed=3) as sim:
        config = batch_chain(sim.base_url, {"answer": "batcher"}, {"flush_after_s": 0.1, "max_attempts": 10})
        result = await run(config, 40, tmp_path / "again")
        stats = await sim_stats(sim)
    batches = result.summary["batches"]["batcher"]
    assert result.summary["records_written"] == 40
    assert batches["batches_expired"] >= 1 and batches["lines_not_run"] > 0
    assert batches["lines_resubmitted"] == batches["lines_submitted"] - 40 > 0
    assert stats["batches"]["duplicate_lines"] == 0

    async with simulator(batch_delay_s=0.4, batch_expire_s=0.01) as sim:  # every line expires
        config = batch_chain(
            sim.base_url, {"answer": "batcher"}, {"flush_after_s": 0.1, "max_attempts": 1}, max_error_rate=1.0
        )
        result = await run(config, 10, tmp_path / "dropped")
    assert result.summary["rows_dropped_by_reason"] == {"answer:not_run": 10}
    assert result.summary["batches"]["batcher"]["requests_failed_not_run"] == 10


async def test_a_preview_runs_batches_without_a_journal():
    async with simulator(batch_delay_s=0.1) as sim:
        config = batch_chain(sim.base_url, {"answer": "batcher"}, {"flush_after_s": 0.1})
        result = await run_job(config, 5, output=None)
        stats = await sim_stats(sim)
    assert result.to_arrow().num_rows == 5 and result.summary["batches"]["batcher"]["requests_answered"] == 5
    assert stats["batches"]["lines_submitted"] == 5


async def test_a_structured_reply_that_breaks_its_schema_is_asked_again_in_a_later_batch(tmp_path: Path):
    async with simulator(batch_delay_s=0.1, schema_invalid_rate=0.3, seed=4) as sim:
        config = batch_chain(sim.base_url, {"review": "batcher"}, {"flush_after_s": 0.1})
        result = await run(config, 40, tmp_path / "out")
    batches = result.summary["batches"]["batcher"]
    assert result.summary["records_written"] + result.summary["rows_dropped"] == 40
    # Each re-ask is a new line (its messages carry the correction) in a batch after the one that answered wrong.
    assert batches["lines_submitted"] > 40 and batches["lines_resubmitted"] == 0 and batches["batches_submitted"] >= 2
    assert batches["requests_answered"] == batches["lines_submitted"]
    reasons = result.summary["rows_dropped_by_reason"]
    assert set(reasons) <= {"review:schema_invalid"}


@pytest.mark.parametrize(("status", "says"), [(404, "set `execution: online`"), (401, "refused the API key")])
async def test_a_server_without_a_batch_api_stops_the_run_with_the_fix(loopback_http, tmp_path: Path, status, says):
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "no such route", "type": "invalid_request_error"}}, status=status
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    root = await loopback_http(app)
    config = DatasetConfig.from_dict(
        {
            "providers": [{"name": "vllm", "base_url": f"{root}/v1"}],
            "models": [
                {"alias": "b", "provider": "vllm", "model": "m", "execution": "batch", "batch": {"flush_after_s": 0}}
            ],
            "columns": [
                {"name": "topic", "type": "category", "values": ["jazz", "tea"]},
                {"name": "answer", "type": "llm_text", "model": "b", "prompt": "About {{ topic }}."},
            ],
        }
    )
    with pytest.raises(BatchApiRefused) as info:
        await run_job(config, 30, output=tmp_path / "out")
    assert says in str(info.value) and "model 'b'" in str(info.value)
