"""OpenAI's batch API client against the simulator over real sockets: a batch's lines come back as the replies and
errors online requests would be, lines a batch never ran are `NotRun`, and a refused request is the classified
error with its words."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config.models import ProviderConfig
from rowloom.models.clients import OpenAIClient
from rowloom.models.clients.openai_batch import BatchLine, NotRun, OpenAIBatchApi
from rowloom.models.types import ChatRequest, ChatResponse, ClientRequestError, KeyRejected, ServerError

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@contextlib.asynccontextmanager
async def batch_api(api_key: str | None = None, **settings: Any) -> AsyncIterator[tuple[OpenAIBatchApi, OpenAIClient]]:
    async with SimulatorServer(SimulatorConfig(**settings)) as sim:
        provider = ProviderConfig(name="sim", base_url=sim.base_url)
        async with OpenAIClient(provider, api_key=api_key) as client:
            yield OpenAIBatchApi(client), client


def request(prompt: str, **params: Any) -> ChatRequest:
    return ChatRequest(model="sim-model", messages=({"role": "user", "content": prompt},), params=params)


async def run_to_end(api: OpenAIBatchApi, lines: list[BatchLine]):
    status = await api.create(await api.upload(lines))
    while not status.terminal:
        await asyncio.sleep(0.05)
        status = await api.status(status.id)
    return status, await api.results(status, [line.custom_id for line in lines])


async def test_a_batch_returns_the_replies_online_requests_get():
    async with batch_api(batch_delay_s=0.2) as (api, client):
        lines = [BatchLine(f"cell-{i}", request(f"Name a river, number {i}.", max_tokens=16)) for i in range(10)]
        structured = ChatRequest(
            model="sim-model",
            messages=({"role": "user", "content": "A name."},),
            json_schema=SCHEMA,
            schema_name="answer",
        )
        lines.append(BatchLine("cell-structured", structured))
        status, results = await run_to_end(api, lines)
        assert status.status == "completed" and (status.total, status.completed, status.failed) == (11, 11, 0)
        assert set(results) == {line.custom_id for line in lines}
        online = await client.chat(lines[4].request)
        reply = results["cell-4"]
        assert isinstance(reply, ChatResponse) and reply.text == online.text
        assert reply.usage.completion_tokens == online.usage.completion_tokens
        assert isinstance(results["cell-structured"], ChatResponse) and '"name"' in results["cell-structured"].text


async def test_failed_and_expired_lines_come_back_as_the_errors_they_are():
    async with batch_api(batch_delay_s=0.1, batch_fail_rate=1.0) as (api, _):
        _, results = await run_to_end(api, [BatchLine("a", request("one"))])
        assert isinstance(results["a"], ServerError) and results["a"].retryable and results["a"].status == 500
    async with batch_api(batch_delay_s=1.0, batch_expire_s=0.6, seed=3) as (api, _):
        lines = [BatchLine(f"r{i}", request(f"prompt {i}")) for i in range(30)]
        status, results = await run_to_end(api, lines)
        assert status.status == "expired"
        not_run = [r for r in results.values() if isinstance(r, NotRun)]
        done = [r for r in results.values() if isinstance(r, ChatResponse)]
        assert len(not_run) + len(done) == 30 and not_run and done
        assert "batch_expired" in str(not_run[0]) and not_run[0].retryable


async def test_a_cancelled_batch_ran_nothing_and_a_result_missing_from_both_files_is_not_run():
    async with batch_api(batch_delay_s=30) as (api, _):
        status = await api.create(await api.upload([BatchLine("a", request("one"))]))
        status = await api.cancel(status.id)
        assert status.status == "cancelled"
        results = await api.results(status, ["a", "never-submitted"])
        assert isinstance(results["a"], NotRun) and isinstance(results["never-submitted"], NotRun)
        with pytest.raises(ValueError, match="not final"):
            running = await api.create(await api.upload([BatchLine("b", request("two"))]))
            await api.results(running, ["b"])


async def test_refused_batch_requests_raise_the_classified_error():
    async with SimulatorServer(SimulatorConfig(api_key="right")) as sim:
        provider = ProviderConfig(name="sim", base_url=sim.base_url)
        async with OpenAIClient(provider, api_key="wrong") as client:
            with pytest.raises(KeyRejected):
                await OpenAIBatchApi(client).upload([BatchLine("a", request("one"))])
        async with OpenAIClient(provider, api_key="right") as client:
            api = OpenAIBatchApi(client)
            with pytest.raises(ClientRequestError, match="input_file_id"):
                await api.create("file-missing")
            failed = await api.create(
                await api.upload([BatchLine("a", request("one")), BatchLine("a", request("two"))])
            )
            assert failed.status == "failed" and failed.errors == (
                "line 2: duplicate_custom_id: custom_id 'a' repeats",
            )
