"""The simulator's batch API over real sockets: upload, create, poll, results, failure, expiry, cancel, and the
counters a resume test reads (lines submitted, duplicates)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer


@contextlib.asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[SimulatorServer, aiohttp.ClientSession, str]]:
    async with SimulatorServer(SimulatorConfig(**settings)) as sim, aiohttp.ClientSession() as http:
        yield sim, http, f"http://127.0.0.1:{sim.port}"


def line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "sim-model", "messages": messages, **body},
    }


async def upload(http: aiohttp.ClientSession, root: str, lines: list[dict[str, Any]], purpose: str = "batch"):
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    content = b"".join(orjson.dumps(item) + b"\n" for item in lines)
    form.add_field("file", content, filename="input.jsonl", content_type="application/jsonl")
    async with http.post(f"{root}/v1/files", data=form) as response:
        return response.status, await response.json()


async def create(http: aiohttp.ClientSession, root: str, file_id: str) -> dict[str, Any]:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    async with http.post(f"{root}/v1/batches", json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json() if response.content_type == "application/json" else await response.read()


async def results(http: aiohttp.ClientSession, root: str, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    raw = await get(http, f"{root}/v1/files/{file_id}/content")
    return {entry["custom_id"]: entry for entry in map(orjson.loads, raw.splitlines())}


async def submit(http, root, lines) -> dict[str, Any]:
    status, file = await upload(http, root, lines)
    assert status == 200 and file["purpose"] == "batch"
    return await create(http, root, file["id"])


async def stats(http, root) -> dict[str, Any]:
    return (await get(http, f"{root}/stats"))["batches"]


async def test_a_batch_runs_to_completion_with_the_replies_an_online_request_gets():
    async with running(batch_delay_s=0.4) as (_, http, root):
        lines = [line(f"row-{i}", f"Name a colour, number {i}.", max_tokens=20) for i in range(20)]
        batch = await submit(http, root, lines)
        assert batch["status"] == "in_progress" and batch["request_counts"]["total"] == 20
        assert batch["output_file_id"] is None
        await asyncio.sleep(0.5)
        batch = await get(http, f"{root}/v1/batches/{batch['id']}")
        assert batch["status"] == "completed" and batch["completed_at"] is not None
        assert batch["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
        assert batch["error_file_id"] is None
        out = await results(http, root, batch["output_file_id"])
        assert sorted(out) == sorted(item["custom_id"] for item in lines)
        async with http.post(f"{root}/v1/chat/completions", json=lines[3]["body"]) as response:
            online = await response.json()
        reply = out["row-3"]["response"]
        assert reply["status_code"] == 200
        assert reply["body"]["choices"][0]["message"] == online["choices"][0]["message"]
        counters = await stats(http, root)
        assert counters["batches_created"] == 1 and counters["lines_submitted"] == 20
        assert counters["lines_completed"] == 20 and counters["duplicate_lines"] == 0 and counters["open"] == 0


async def test_failed_lines_come_back_in_the_error_file_and_resubmitting_them_is_not_a_duplicate():
    async with running(batch_delay_s=0.1, batch_fail_rate=1.0) as (_, http, root):
        batch = await submit(http, root, [line("a", "one"), line("b", "two")])
        await asyncio.sleep(0.2)
        batch = await get(http, f"{root}/v1/batches/{batch['id']}")
        assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 2
        assert batch["output_file_id"] is None
        errors = await results(http, root, batch["error_file_id"])
        assert errors["a"]["response"]["status_code"] == 500
        await submit(http, root, [line("a", "one")])  # a retry of a failed line
        counters = await stats(http, root)
        assert counters["lines_submitted"] == 3 and counters["lines_failed"] == 2 and counters["duplicate_lines"] == 0


async def test_resubmitting_a_line_that_succeeded_or_is_still_running_counts_as_a_duplicate():
    async with running(batch_delay_s=0.1) as (_, http, root):
        first = await submit(http, root, [line("a", "one"), line("b", "two")])
        await submit(http, root, [line("b", "two")])  # still running: billed twice
        await asyncio.sleep(0.2)
        await get(http, f"{root}/v1/batches/{first['id']}")
        await submit(http, root, [line("a", "one")])  # done: billed twice
        assert (await stats(http, root))["duplicate_lines"] == 2


async def test_a_batch_past_its_expiry_returns_its_finished_lines_and_expires_the_rest():
    async with running(batch_delay_s=1.0, batch_expire_s=0.75, seed=3) as (_, http, root):
        batch = await submit(http, root, [line(f"r{i}", f"prompt {i}") for i in range(40)])
        await asyncio.sleep(0.85)
        batch = await get(http, f"{root}/v1/batches/{batch['id']}")
        assert batch["status"] == "expired" and batch["expired_at"] is not None
        counts = batch["request_counts"]
        assert counts["total"] == 40 and 0 < counts["completed"] < 40 and counts["failed"] == 40 - counts["completed"]
        out = await results(http, root, batch["output_file_id"])
        errors = await results(http, root, batch["error_file_id"])
        assert len(out) == counts["completed"] and set(out).isdisjoint(errors)
        assert {entry["error"]["code"] for entry in errors.values()} == {"batch_expired"}


async def test_a_cancelled_batch_keeps_nothing_unfinished():
    async with running(batch_delay_s=30) as (_, http, root):
        batch = await submit(http, root, [line("a", "one"), line("b", "two")])
        async with http.post(f"{root}/v1/batches/{batch['id']}/cancel") as response:
            cancelled = await response.json()
        assert cancelled["status"] == "cancelled" and cancelled["request_counts"]["completed"] == 0
        errors = await results(http, root, cancelled["error_file_id"])
        assert {entry["error"]["code"] for entry in errors.values()} == {"batch_cancelled"}
        assert (await stats(http, root))["batches_cancelled"] == 1


async def test_bad_input_files_fail_the_batch_naming_each_line_and_bad_uploads_are_refused():
    async with running() as (_, http, root):
        bad_url = {**line("c", "three"), "url": "/v1/embeddings"}
        batch = await submit(http, root, [line("a", "one"), line("a", "two"), bad_url])
        assert batch["status"] == "failed" and batch["request_counts"]["total"] == 0
        assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == [
            ("duplicate_custom_id", 2),
            ("invalid_url", 3),
        ]
        status, body = await upload(http, root, [line("a", "one")], purpose="fine-tune")
        assert status == 400 and body["error"]["param"] == "purpose"
        async with http.get(f"{root}/v1/batches/batch_missing") as response:
            assert response.status == 404
        counters = await stats(http, root)
        assert counters["batches_failed"] == 1 and counters["lines_submitted"] == 0
