"""A reply body is read up to the provider's `max_reply_bytes`, counted after decompression: a larger reply, or
a gzip bomb, fails that request (`reply_too_large`) as soon as it passes the cap, over real sockets on 127.0.0.1.
Retried, then its row is dropped; the endpoint answered, so it is never marked down."""

from __future__ import annotations

import json
import zlib

import orjson
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from rowloom.config import DatasetConfig
from rowloom.config.models import ProviderConfig
from rowloom.engine.job import run_job
from rowloom.models.clients import OpenAIClient
from rowloom.models.types import ChatRequest, Outcome, ReplyTooLarge

MIB = 1024 * 1024
REQUEST = ChatRequest(model="m", messages=({"role": "user", "content": "hello"},))
#: Decompressed size of the bomb: finite, so a client without a cap fails the test instead of the machine.
BOMB_MIB = 512


def reply(text: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})


def gzip_bomb_blocks() -> tuple[bytes, bytes]:
    """The first 1 MiB of zeros gzipped, and the (identical) compressed bytes of every further 1 MiB: ~1 KB each."""
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    more = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return first, more


async def _handle(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    prompt = body["messages"][-1]["content"]
    if prompt == "bomb":
        first, more = gzip_bomb_blocks()
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        await response.prepare(request)
        await response.write(first)
        for _ in range(BOMB_MIB - 1):
            await response.write(more)
        return response
    if prompt.startswith("big"):  # "big 2" and the like: a reply of that many MiB
        return web.Response(body=reply("a" * int(float(prompt.split()[1]) * MIB)), content_type="application/json")
    return web.Response(body=reply("42"), content_type="application/json")


@pytest.fixture
async def server(loopback_http) -> str:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _handle)
    return f"{await loopback_http(app)}/v1"


def ask(prompt: str) -> ChatRequest:
    return ChatRequest(model="m", messages=({"role": "user", "content": prompt},))


async def test_a_reply_larger_than_max_reply_bytes_fails_that_request(server):
    async with OpenAIClient(ProviderConfig(name="p", base_url=server, max_reply_bytes=MIB)) as client:
        with pytest.raises(ReplyTooLarge) as info:
            await client.chat(ask("big 2"))
        assert (await client.chat(ask("small"))).text == "42"  # the next request on the endpoint is unaffected
    error = info.value
    assert error.outcome is Outcome.REPLY_TOO_LARGE and error.retryable and not error.outcome.is_unavailable
    assert str(error) == (
        "reply body larger than max_reply_bytes (1,048,576 bytes); reading stopped there. Raise the provider's "
        "max_reply_bytes if this endpoint really sends replies that large"
    )


async def test_the_default_cap_is_generous(server):
    async with OpenAIClient(ProviderConfig(name="p", base_url=server)) as client:
        assert len((await client.chat(ask("big 8"))).text) == 8 * MIB
    assert ProviderConfig(name="p", base_url=server).max_reply_bytes == 32 * MIB


async def test_a_gzip_bomb_stops_at_the_cap_counted_after_decompression(server):
    process = psutil.Process()
    before = process.memory_info().rss
    async with OpenAIClient(ProviderConfig(name="p", base_url=server, max_reply_bytes=MIB, timeout_s=30)) as client:
        with pytest.raises(ReplyTooLarge) as info:
            await client.chat(ask("bomb"))
    assert "after gzip decompression" in str(info.value)
    # 512 MiB decompressed were on offer; reading stopped past 1 MiB (aiohttp inflates in bounded steps).
    assert process.memory_info().rss - before < 128 * MIB


async def test_an_oversized_reply_is_retried_then_its_row_dropped_and_the_endpoint_stays_up(server, tmp_path):
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"size": ["1", "1", "2", "1"]}), seed)
    config = DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": server, "max_reply_bytes": int(1.5 * MIB)}],
            "models": [{"alias": "m", "provider": "p", "model": "x"}],
            "seed": {"path": str(seed)},
            "columns": [{"name": "answer", "type": "llm_text", "model": "m", "prompt": "big {{ size }}"}],
            "run": {
                "row_group_size": 4,
                "max_error_rate": 1.0,
                "request_admission": {"max_attempts": 4, "server_error_backoff_s": 0.01},
            },
        }
    )
    await run_job(config, 4, output=tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["records_written"] == 3
    assert summary["rows_dropped_by_reason"] == {"answer:reply_too_large": 1}
    assert summary["requests"]["total"] == 3 + 4  # three rows answered at once, the fourth asked four times
    assert all(e["outages"] == 0 for e in summary["endpoints"].values())
