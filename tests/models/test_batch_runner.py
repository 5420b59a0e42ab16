"""The batch runner against the simulator's batch API over real sockets: requests gathered into batches by count,
bytes and time; retryable lines resubmitted and counted; a resumed runner waits for the batches the journal says
were created instead of submitting their lines again (the simulator counts duplicates)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config.models import ProviderConfig
from rowloom.models.batch import BatchJournal, BatchRunner, BatchSettings
from rowloom.models.clients import OpenAIClient
from rowloom.models.clients.openai_batch import BatchLine, OpenAIBatchApi
from rowloom.models.types import ChatRequest, ChatResponse, ServerError

FAST = {"flush_after_s": 0.05, "poll_min_s": 0.05, "poll_max_s": 0.2}


@contextlib.asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[tuple[SimulatorServer, OpenAIClient]]:
    async with SimulatorServer(SimulatorConfig(**settings)) as sim:
        client = OpenAIClient(ProviderConfig(name="sim", base_url=sim.base_url))
        async with client:
            yield sim, client


async def counters(sim: SimulatorServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{sim.port}/stats") as response:
        return (await response.json())["batches"]


def request(i: int) -> ChatRequest:
    return ChatRequest(model="sim-model", messages=({"role": "user", "content": f"Name a bird, number {i}."},))


async def answered(client: OpenAIClient, n: int, **settings: Any) -> tuple[BatchRunner, list[ChatResponse]]:
    """A runner with `settings` asked `n` requests at once; every one must come back a reply."""
    runner = BatchRunner(OpenAIBatchApi(client), "llm", BatchSettings(**{**FAST, **settings}))
    replies = await asyncio.gather(*(runner.chat(f"c{i}", request(i)) for i in range(n)))
    assert all(isinstance(r, ChatResponse) for r in replies)
    return runner, replies


async def test_requests_are_gathered_into_batches_by_count_and_answered_as_online():
    async with simulator(batch_delay_s=0.1) as (sim, client):
        runner, replies = await answered(client, 25, max_requests=10)
        assert replies[7].text == (await client.chat(request(7))).text
        stats = await counters(sim)
        assert stats["batches_created"] == 3 and stats["lines_submitted"] == 25 and stats["duplicate_lines"] == 0
        assert (runner.counts.batches, runner.counts.lines, runner.counts.resubmitted) == (3, 25, 0)
        assert await runner.close() == []


async def test_a_batch_is_cut_at_its_byte_limit_and_sent_after_flush_after_s_when_not_full():
    async with simulator(batch_delay_s=0.05) as (sim, client):
        api = OpenAIBatchApi(client)
        size = len(api.line_bytes(BatchLine("c0", request(0)))) + 1
        runner = BatchRunner(api, "llm", BatchSettings(max_bytes=3 * size + 2, **FAST))
        await asyncio.gather(*(runner.chat(f"c{i}", request(i)) for i in range(7)))
        assert runner.counts.batches == 3  # 3 + 3 + 1: the last one went when flush_after_s passed
        assert (await counters(sim))["lines_submitted"] == 7


async def test_retryable_lines_are_resubmitted_until_they_succeed_and_are_never_billed_twice():
    async with simulator(batch_delay_s=0.05, batch_fail_rate=0.4, seed=5) as (sim, client):
        runner, _ = await answered(client, 30, max_attempts=10)
        stats = await counters(sim)
        assert stats["lines_failed"] > 0 and stats["lines_submitted"] == 30 + runner.counts.resubmitted
        assert stats["duplicate_lines"] == 0 and runner.counts.batches > 1


async def test_a_line_that_keeps_failing_raises_its_error_after_max_attempts():
    async with simulator(batch_delay_s=0.05, batch_fail_rate=1.0) as (sim, client):
        runner = BatchRunner(OpenAIBatchApi(client), "llm", BatchSettings(max_attempts=2, **FAST))
        with pytest.raises(ServerError):
            await runner.chat("c0", request(0))
        assert (await counters(sim))["lines_submitted"] == 2 and runner.counts.failed == 1


async def test_expired_lines_go_again_in_a_later_batch():
    async with simulator(batch_delay_s=0.4, batch_expire_s=0.3, seed=2) as (sim, client):
        await answered(client, 20, max_attempts=10)
        stats = await counters(sim)
        assert stats["batches_expired"] >= 1 and stats["lines_expired"] > 0 and stats["duplicate_lines"] == 0


async def test_a_resumed_runner_waits_for_the_batch_it_created_instead_of_submitting_again(tmp_path: Path):
    journal = BatchJournal(tmp_path / "batches.jsonl")
    async with simulator(batch_delay_s=1.5) as (sim, client):  # far longer than the first runner lives
        first = BatchRunner(OpenAIBatchApi(client), "llm", BatchSettings(**FAST), journal=journal)
        asked = [asyncio.ensure_future(first.chat(f"c{i}", request(i))) for i in range(12)]
        while first.counts.batches == 0:
            await asyncio.sleep(0.02)
        running = await first.close()  # the run stops while its batch runs: the batch is left to finish
        assert len(running) == 1 and all(task.cancelled() or not task.done() for task in asked)
        for task in asked:
            task.cancel()
        second = BatchRunner(OpenAIBatchApi(client), "llm", BatchSettings(**FAST), journal=journal)
        await second.start()
        replies = await asyncio.gather(*(second.chat(f"c{i}", request(i)) for i in range(12)))
        assert all(isinstance(r, ChatResponse) for r in replies) and second.counts.resumed == 12
        stats = await counters(sim)
        assert stats["lines_submitted"] == 12 and stats["duplicate_lines"] == 0 and stats["batches_created"] == 1
        assert journal.open_batches() == []


async def test_a_batch_created_before_its_id_reached_the_journal_is_found_by_its_key(tmp_path: Path):
    journal = BatchJournal(tmp_path / "batches.jsonl")
    async with simulator(batch_delay_s=1.0) as (sim, client):
        api = OpenAIBatchApi(client)
        first = BatchRunner(api, "llm", BatchSettings(**FAST), journal=journal)
        asked = [asyncio.ensure_future(first.chat(f"c{i}", request(i))) for i in range(4)]
        while first.counts.batches == 0:
            await asyncio.sleep(0.02)
        await first.close()
        for task in asked:
            task.cancel()
        # the run died between creating the batch and journaling its id: drop the "created" record
        kept = [line for line in journal.path.read_text().splitlines() if '"created"' not in line]
        journal.path.write_text("\n".join(kept) + "\n")
        assert journal.open_batches()[0].batch_id is None
        second = BatchRunner(api, "llm", BatchSettings(**FAST), journal=journal)
        await second.start()
        replies = await asyncio.gather(*(second.chat(f"c{i}", request(i)) for i in range(4)))
        assert all(isinstance(r, ChatResponse) for r in replies)
        assert (await counters(sim))["lines_submitted"] == 4


async def test_a_resumed_line_that_came_back_not_run_is_sent_again(tmp_path: Path):
    journal = BatchJournal(tmp_path / "batches.jsonl")
    async with simulator(batch_delay_s=30) as (sim, client):
        api = OpenAIBatchApi(client)
        first = BatchRunner(api, "llm", BatchSettings(**FAST), journal=journal)
        asked = asyncio.ensure_future(first.chat("c0", request(0)))
        while first.counts.batches == 0:
            await asyncio.sleep(0.02)
        (batch_id,) = await first.close(cancel=True)
        asked.cancel()
        assert (await api.status(batch_id)).status == "cancelled"
        second = BatchRunner(api, "llm", BatchSettings(**FAST), journal=journal)
        await second.start()
        again = asyncio.ensure_future(second.chat("c0", request(0)))
        while second.counts.batches == 0:  # its new batch runs for 30 s: the test stops waiting once it is sent
            await asyncio.sleep(0.02)
        again.cancel()
        assert (await counters(sim))["lines_submitted"] == 2 and second.counts.resubmitted == 1
        await second.close(cancel=True)


async def test_polls_and_downloads_that_cannot_connect_are_tried_again_without_resubmitting():
    # The server refuses connections from 0.3 s to 0.9 s, while its batch runs: the runner keeps polling.
    async with simulator(batch_delay_s=0.3, outages="0.3+0.6") as (sim, client):
        runner, _ = await answered(client, 6, max_attempts=1)
        assert runner.counts.lines == 6 and runner.counts.resubmitted == 0
        assert (await counters(sim))["lines_submitted"] == 6


def test_a_line_id_names_its_task_and_request_and_gives_back_the_row_group():
    from rowloom.models.batch import line_id, row_group_of

    first, again = line_id("12:answer:7", b'{"a":1}'), line_id("12:answer:7", b'{"a":2}')
    assert first.startswith("12:answer:7#") and first != again  # a re-ask is another line
    assert line_id("12:answer:7", b'{"a":1}') == first  # the same in a resumed run
    assert row_group_of(first) == 12 and row_group_of(line_id(None, b"{}")) is None
