"""The provider simulator over real loopback HTTP: capacity, vLLM sharing, rate limits, faults, auth, stats."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import aiohttp
import jsonschema
import orjson
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer

T = TypeVar("T")

PROMPT = [{"role": "user", "content": "Describe a lighthouse in one sentence."}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "rank": {"type": "integer", "minimum": 1, "maximum": 3}},
    "required": ["name", "rank"],
    "additionalProperties": False,
}


@contextlib.asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[SimulatorServer, aiohttp.ClientSession]]:
    async with SimulatorServer(SimulatorConfig(**settings)) as sim, aiohttp.ClientSession() as http:
        yield sim, http


async def chat(
    http: aiohttp.ClientSession, sim: SimulatorServer, **body: Any
) -> tuple[int, dict[str, str], bytes, float]:
    """POST a chat completion; returns status, headers, raw body and the latency in seconds."""
    payload = {"model": "sim-model", "messages": PROMPT, **body}
    started = time.perf_counter()
    async with http.post(f"{sim.base_url}/chat/completions", json=payload) as response:
        raw = await response.read()
        return response.status, dict(response.headers), raw, time.perf_counter() - started


async def by_completion(*calls: Coroutine[Any, Any, T]) -> list[T]:
    """The calls' results in the order they finished."""
    return [await done for done in asyncio.as_completed(calls)]


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


# --- capacity --------------------------------------------------------------------------------------------


async def test_hosted_mode_answers_429_with_retry_after_beyond_capacity():
    # 0.5 s of service: ample time for all five to arrive while the first two are served
    async with running(capacity=2, latency_s=0.5, retry_after_s=0.4) as (sim, http):
        results = await by_completion(*(chat(http, sim) for _ in range(5)))
    # rejected at once: every 429 is answered while the two admitted requests are still in service
    assert [status for status, *_ in results] == [429, 429, 429, 200, 200]
    for status, headers, raw, _ in results:
        if status == 429:
            assert headers["Retry-After"] == "1"  # ceil(0.4 s), never below one second
            assert headers["retry-after-ms"] == "400"
            assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"


async def test_no_retry_after_option_omits_retry_headers():
    async with running(capacity=1, latency_s=0.1, send_retry_after=False) as (sim, http):
        results = await asyncio.gather(*(chat(http, sim) for _ in range(2)))
    rejected = [headers for status, headers, *_ in results if status == 429]
    assert len(rejected) == 1
    assert "Retry-After" not in rejected[0]
    assert "retry-after-ms" not in rejected[0]


async def test_vllm_mode_latency_scales_with_load_and_never_429():
    # 0.2 s of service: ample time for all eight to arrive before the first could finish
    async with running(mode="vllm", capacity=2, latency_s=0.2) as (sim, http):
        _, _, _, alone = await chat(http, sim)
        began = time.perf_counter()
        results = await asyncio.gather(*(chat(http, sim) for _ in range(8)))
        batch = time.perf_counter() - began
        stats = await sim.stats()
    assert {status for status, *_ in results} == {200}
    assert alone >= 0.2 - 1e-3  # the no-load service time (less processor sharing's rounding margin)
    # 8 requests of 0.2 s on capacity 2 share it: no faster than 8 * 0.2 / 2 of work, 4x one alone (the exact
    # processor-sharing times are checked in virtual time in test_simulator_limits.py)
    assert batch >= 8 * 0.2 / 2 - 1e-3
    assert stats["peak_in_flight"] == 8


async def test_vllm_queue_limit_answers_503_without_retry_after_beyond_capacity_plus_queue():
    async with running(mode="vllm", capacity=2, max_queued=1, latency_s=0.3) as (sim, http):
        results = await by_completion(*(chat(http, sim) for _ in range(5)))
        stats = await sim.stats()
    # refused at once: both 503s are answered while the three accepted requests are still in service
    assert [status for status, *_ in results] == [503, 503, 200, 200, 200]
    for status, headers, raw, _ in results:
        if status == 503:
            assert "Retry-After" not in headers and "retry-after-ms" not in headers
            assert orjson.loads(raw)["error"]["code"] == "queue_full"
    assert stats["peak_in_flight"] == 3


async def test_capacity_schedule_switches_hosted_capacity_and_restarts_on_reset():
    # the early three arrive within their 0.2 s of service and are done long before the step at 0.6 s
    async with running(capacity_schedule="0:1,0.6:3", latency_s=0.2) as (sim, http):
        early = Counter(s for s, *_ in await asyncio.gather(*(chat(http, sim) for _ in range(3))))
        assert (await sim.stats())["capacity"] == 1
        await asyncio.sleep(0.65 - (await sim.stats())["wall_s"])
        late = Counter(s for s, *_ in await asyncio.gather(*(chat(http, sim) for _ in range(3))))
        assert (await sim.stats())["capacity"] == 3
        async with http.post(f"{sim.base_url[:-3]}/stats/reset") as response:
            assert response.status == 200
        assert (await sim.stats())["capacity"] == 1
    assert early == {200: 1, 429: 2}
    assert late == {200: 3}


async def test_capacity_step_speeds_up_requests_already_in_vllm_service():
    # 4 jobs of 0.1 s on capacity 1 take 0.4 s; capacity 4 from t=0.15 s finishes them near 0.21 s (the exact
    # times are checked in virtual time in test_simulator_limits.py). Here: the same batch without the step,
    # on the same machine, is slower.
    async def slowest(**settings: Any) -> float:
        async with running(mode="vllm", latency_s=0.1, **settings) as (sim, http):
            results = await asyncio.gather(*(chat(http, sim) for _ in range(4)))
        return max(latency for *_, latency in results)

    stepped, unstepped = await slowest(capacity_schedule="0:1,0.15:4"), await slowest(capacity=1)
    assert unstepped >= 0.4 - 1e-3  # 4 * 0.1 s of work on capacity 1
    assert stepped < unstepped, (stepped, unstepped)


# --- rate limits -----------------------------------------------------------------------------------------


async def test_rate_limit_headers_report_limit_and_decreasing_remaining():
    async with running(latency_s=0, rpm=5, tpm=100_000) as (sim, http):
        began = time.monotonic()
        replies = [await chat(http, sim) for _ in range(3)]
        elapsed = time.monotonic() - began
    remaining = [int(headers["x-ratelimit-remaining-requests"]) for _, headers, *_ in replies]
    assert remaining == [4, 3, 2]
    headers = replies[-1][1]
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    used = sum(orjson.loads(raw)["usage"]["total_tokens"] for _, _, raw, _ in replies)
    # The bucket refills at 100_000/60 tokens per second while the three requests run (a loaded host is slow).
    refilled = elapsed * 100_000 / 60
    assert 100_000 - used - 1 <= int(headers["x-ratelimit-remaining-tokens"]) <= 100_000 - used + refilled + 1
    # 3 of 5 requests used, refilling at 5/60 per second: 36 s to full, less what refilled while they ran.
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert 36.0 - elapsed - 0.1 <= float(headers["x-ratelimit-reset-requests"].rstrip("s")) <= 36.0


async def test_exhausted_rpm_answers_429_with_time_until_refill():
    async with running(latency_s=0, rpm=6) as (sim, http):
        ok = [await chat(http, sim) for _ in range(6)]
        status, headers, raw, _ = await chat(http, sim)
    assert {s for s, *_ in ok} == {200}
    assert status == 429
    assert headers["x-ratelimit-remaining-requests"] == "0"
    # One request refills in 60/6 = 10 s.
    assert headers["Retry-After"] == "10"
    assert 9_900 <= int(headers["retry-after-ms"]) <= 10_000
    assert orjson.loads(raw)["error"]["type"] == "requests"


async def test_exhausted_tpm_answers_429_limited_by_tokens():
    async with running(latency_s=0, tpm=150) as (sim, http):
        replies = [await chat(http, sim, max_tokens=40) for _ in range(5)]
    statuses = [status for status, *_ in replies]
    assert statuses[0] == 200
    assert 429 in statuses
    _, headers, raw, _ = replies[statuses.index(429)]
    assert orjson.loads(raw)["error"]["type"] == "tokens"
    # Each request costs about 50 tokens and 150/60 = 2.5 tokens refill per second: seconds, not minutes.
    assert 1 <= int(headers["Retry-After"]) <= 20
    assert int(headers["x-ratelimit-remaining-tokens"]) < 50


# --- fault injection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "status"), [("error_rate", 500), ("overload_rate", 503)])
async def test_error_injection_answers_server_errors(setting: str, status: int):
    async with running(latency_s=0, **{setting: 1.0}) as (sim, http):
        got, _, raw, _ = await chat(http, sim)
    assert got == status
    assert "message" in orjson.loads(raw)["error"]


async def test_overload_status_529_simulates_anthropic_overload():
    async with running(latency_s=0, overload_rate=1.0, overload_status=529) as (sim, http):
        status, headers, raw, _ = await chat(http, sim)
    assert status == 529
    assert orjson.loads(raw)["error"]["code"] == "overloaded"
    assert "Retry-After" not in headers


@pytest.mark.parametrize(("status", "title"), [(502, b"502 Bad Gateway"), (504, b"504 Gateway Time-out")])
async def test_gateway_error_status_answers_like_a_proxy_in_html(status: int, title: bytes):
    async with running(latency_s=0, error_rate=1.0, error_status=status) as (sim, http):
        got, headers, raw, _ = await chat(http, sim)
    assert got == status
    assert headers["Content-Type"].startswith("text/html")
    assert title in raw


@pytest.mark.parametrize("setting", ["malformed_rate", "truncated_rate"])
async def test_body_injection_answers_200_with_unparseable_json(setting: str):
    async with running(latency_s=0, **{setting: 1.0}) as (sim, http):
        status, headers, raw, _ = await chat(http, sim)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_truncated_body_is_a_prefix_of_the_real_reply():
    async with running(latency_s=0, truncated_rate=1.0) as (sim, http):
        _, _, cut, _ = await chat(http, sim)
    async with running(latency_s=0) as (sim, http):
        _, _, whole, _ = await chat(http, sim)
    assert cut.startswith(b'{"id":"chatcmpl-')
    assert len(cut) < len(whole)


async def test_timeout_injection_holds_the_request_past_the_client_timeout():
    async with running(latency_s=0, timeout_rate=1.0, hang_s=60.0) as (sim, http):
        with pytest.raises(asyncio.TimeoutError):  # the client gave up; the server would have held it 60 s
            async with http.post(
                f"{sim.base_url}/chat/completions",
                json={"model": "m", "messages": PROMPT},
                timeout=aiohttp.ClientTimeout(total=0.2),
            ) as response:
                await response.read()
        # The server notices the client left: the request leaves service and counts as 499.
        while (stats := await sim.stats())["in_flight"]:
            await asyncio.sleep(0.01)
    assert stats["by_status"] == {"499": 1}


async def test_short_hang_is_answered_normally_after_the_hang():
    async with running(latency_s=0, timeout_rate=1.0, hang_s=0.15) as (sim, http):
        status, _, raw, latency = await chat(http, sim)
    assert status == 200
    assert latency >= 0.15
    assert orjson.loads(raw)["choices"][0]["message"]["content"]


async def test_schema_invalid_injection_returns_json_that_violates_the_schema():
    async with running(latency_s=0, schema_invalid_rate=1.0) as (sim, http):
        status, _, raw, _ = await chat(http, sim, response_format=schema_format(SCHEMA))
    assert status == 200
    content = orjson.loads(orjson.loads(raw)["choices"][0]["message"]["content"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(content, SCHEMA)


# --- replies ---------------------------------------------------------------------------------------------


async def test_equal_prompts_get_equal_replies_and_other_prompts_differ():
    async with running(latency_s=0, seed=1) as (sim, http):
        first = orjson.loads((await chat(http, sim))[2])
        second = orjson.loads((await chat(http, sim))[2])
        other = orjson.loads((await chat(http, sim, messages=[{"role": "user", "content": "x"}]))[2])
    content = first["choices"][0]["message"]["content"]
    assert content == second["choices"][0]["message"]["content"]
    assert content != other["choices"][0]["message"]["content"]
    assert first["usage"]["completion_tokens"] == len(content.split())
    assert first["usage"]["prompt_tokens"] == len(PROMPT[0]["content"]) // 4 + 1
    assert first["id"] != second["id"]


async def test_structured_reply_over_http_is_valid_against_the_schema():
    async with running(latency_s=0) as (sim, http):
        status, _, raw, _ = await chat(http, sim, response_format=schema_format(SCHEMA))
    assert status == 200
    reply = orjson.loads(raw)
    jsonschema.validate(orjson.loads(reply["choices"][0]["message"]["content"]), SCHEMA)
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]


async def test_max_tokens_caps_the_reply_and_reports_length():
    async with running(latency_s=0) as (sim, http):
        reply = orjson.loads((await chat(http, sim, max_tokens=5))[2])
    assert len(reply["choices"][0]["message"]["content"].split()) == 5
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 5


async def test_reply_length_follows_max_tokens_across_a_wide_word_range():
    async with running(latency_s=0, reply_words_min=20, reply_words_max=600) as (sim, http):
        mean_tokens = {}
        for cap in (32, 128, 512):
            tokens = []
            for i in range(12):
                messages = [{"role": "user", "content": f"Describe harbor number {i}."}]
                status, _, raw, _ = await chat(http, sim, max_tokens=cap, messages=messages)
                assert status == 200
                tokens.append(orjson.loads(raw)["usage"]["completion_tokens"])
            assert min(tokens) >= 20 and max(tokens) <= cap
            mean_tokens[cap] = statistics.mean(tokens)
    assert mean_tokens[32] < mean_tokens[128] < mean_tokens[512]
    assert mean_tokens[512] > 200  # the default 30..60 words would give the same length as max_tokens=128


async def test_bad_request_bodies_get_400_naming_the_problem():
    async with running(latency_s=0) as (sim, http):
        async with http.post(f"{sim.base_url}/chat/completions", data=b"{nope") as response:
            assert response.status == 400
        status, _, raw, _ = await chat(http, sim, messages=[])
    assert status == 400
    assert orjson.loads(raw)["error"]["param"] == "messages"


async def test_embeddings_are_deterministic_unit_vectors_of_the_configured_dimension():
    async with running(latency_s=0, embedding_dim=24) as (sim, http):

        async def embed(inputs: Any, **extra: Any) -> dict[str, Any]:
            body = {"model": "emb", "input": inputs, **extra}
            async with http.post(f"{sim.base_url}/embeddings", json=body) as response:
                assert response.status == 200
                return await response.json()

        batch = await embed(["alpha", "beta"])
        single = await embed("alpha")
        small = await embed("alpha", dimensions=4)
    vectors = [item["embedding"] for item in batch["data"]]
    assert [len(v) for v in vectors] == [24, 24]
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-9 for v in vectors)
    assert single["data"][0]["embedding"] == vectors[0]
    assert vectors[0] != vectors[1]
    assert len(small["data"][0]["embedding"]) == 4
    assert batch["usage"]["prompt_tokens"] == 3  # ceil(5/4) + ceil(4/4)
    assert [item["index"] for item in batch["data"]] == [0, 1]


# --- auth, models, stats ---------------------------------------------------------------------------------


async def test_api_key_required_when_configured():
    async with running(latency_s=0, api_key="sk-sim") as (sim, http):
        denied, _, raw, _ = await chat(http, sim)
        async with http.post(
            f"{sim.base_url}/chat/completions",
            json={"model": "m", "messages": PROMPT},
            headers={"Authorization": "Bearer wrong"},
        ) as response:
            wrong = response.status
        async with http.post(
            f"{sim.base_url}/chat/completions",
            json={"model": "m", "messages": PROMPT},
            headers={"Authorization": "Bearer sk-sim"},
        ) as response:
            allowed = response.status
        async with http.get(f"{sim.base_url}/models") as response:
            models_denied = response.status
    assert (denied, wrong, allowed, models_denied) == (401, 401, 200, 401)
    assert orjson.loads(raw)["error"]["code"] == "invalid_api_key"


async def test_models_endpoint_lists_the_configured_models():
    async with running(models=("a", "b")) as (sim, http), http.get(f"{sim.base_url}/models") as response:
        listing = await response.json()
    assert [m["id"] for m in listing["data"]] == ["a", "b"]


async def test_stats_count_statuses_paths_tokens_and_peak_in_flight_then_reset():
    async with running(capacity=4, latency_s=0.3) as (sim, http):  # the six arrive within 0.3 s of service
        results = await asyncio.gather(*(chat(http, sim) for _ in range(6)))
        async with http.post(f"{sim.base_url}/embeddings", json={"model": "e", "input": "x"}) as response:
            assert response.status == 200
        async with http.get(f"{sim.base_url[:-3]}/stats") as response:
            stats = await response.json()
        sim.reset()
        after = await sim.stats()
    completion = sum(orjson.loads(raw)["usage"]["completion_tokens"] for s, _, raw, _ in results if s == 200)
    assert stats["requests_total"] == 7
    assert stats["by_status"] == {"200": 5, "429": 2}
    assert stats["by_path"] == {"/v1/chat/completions": 6, "/v1/embeddings": 1}
    assert stats["peak_in_flight"] == 4  # the rejected two never entered service
    # in-flight seconds: the four admitted requests each spent at least their 0.3 s of service in flight
    assert stats["mean_in_flight"] * stats["wall_s"] >= 4 * 0.3 - 1e-6
    assert stats["mean_in_flight"] <= stats["peak_in_flight"]
    assert stats["completion_tokens"] == completion
    assert stats["prompt_tokens"] > 0
    assert stats["in_flight"] == 0
    assert stats["cpu_s"] > 0
    assert stats["wall_s"] >= 0.3
    assert after["requests_total"] == 0
    assert after["by_status"] == {}
    assert after["peak_in_flight"] == 0
    assert after["prompt_tokens"] == after["completion_tokens"] == 0


async def test_non_loopback_host_is_refused():
    with pytest.raises(ValueError, match="loopback"):
        SimulatorServer(SimulatorConfig(), host="0.0.0.0")


# --- usage -------------------------------------------------------------------------------------------------


async def test_usage_details_report_cached_and_reasoning_tokens_and_stats_count_them():
    async with running(latency_s=0, usage_details=True) as (sim, http):
        status, _, raw, _ = await chat(http, sim)
        stats = await sim.stats()
    usage = orjson.loads(raw)["usage"]
    assert status == 200
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert 0 < cached <= usage["prompt_tokens"] and 0 < reasoning <= usage["completion_tokens"]
    assert (stats["cached_tokens"], stats["reasoning_tokens"]) == (cached, reasoning)
    assert stats["prompt_tokens"] == usage["prompt_tokens"] and stats["usage_omitted"] == 0


async def test_omitted_usage_is_left_out_of_the_reply_and_out_of_the_token_counts():
    async with running(latency_s=0, omit_usage_rate=1.0) as (sim, http):
        status, _, raw, _ = await chat(http, sim)
        stats = await sim.stats()
    assert status == 200 and "usage" not in orjson.loads(raw)
    assert stats["usage_omitted"] == 1 and stats["prompt_tokens"] == stats["completion_tokens"] == 0
