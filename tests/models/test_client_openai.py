"""OpenAIClient end to end over real sockets on 127.0.0.1, against a server that crafts each failure."""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import orjson
import pytest
from aiohttp import web

from rowloom.config.models import ProviderConfig
from rowloom.errors import ConfigError, RowloomError
from rowloom.models.clients import InsecureTransportError, OpenAIClient
from rowloom.models.types import (
    ChatRequest,
    ClientRequestError,
    ConnectionFailed,
    KeyRejected,
    Outcome,
    Overloaded,
    ProviderError,
    RateLimited,
    RequestTimeout,
    ServerError,
)

CANARY_KEY = "sk-canary-7f3a9c1e5b2d4680"
REQUEST = ChatRequest(model="m", messages=({"role": "user", "content": "hello"},), params={"temperature": 0.5})


def reply_body(text: str = "hi there") -> bytes:
    return orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
    )


@dataclass
class FakeProvider:
    """A crafted OpenAI-compatible server: the first path segment picks the behaviour."""

    base: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_headers: list[list[tuple[str, str]]] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0

    def url(self, case: str) -> str:
        return f"{self.base}/{case}/v1"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        case = request.match_info["case"]
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": orjson.loads(body), "path": request.path})
        self.raw_headers.append(list(request.headers.items()))
        self.peers.add(request.transport.get_extra_info("peername"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.respond(case, request)
        finally:
            self.in_flight -= 1

    async def respond(self, case: str, request: web.Request) -> web.StreamResponse:
        json = "application/json"
        if case == "ok":
            return web.Response(body=reply_body(), content_type=json)
        if case == "slow-ok":
            await asyncio.sleep(0.05)
            return web.Response(body=reply_body(), content_type=json)
        if case == "ratelimit-headers":
            headers = {
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-remaining-requests": "59",
                "x-ratelimit-reset-requests": "1h2m3.5s",
                "x-ratelimit-limit-tokens": "150000",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6m0s",
            }
            return web.Response(body=reply_body(), content_type=json, headers=headers)
        if case == "429-seconds":
            return web.json_response(
                {"error": {"message": "Rate limit reached"}}, status=429, headers={"Retry-After": "7"}
            )
        if case == "429-ms":
            headers = {"Retry-After": "2", "retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0"}
            return web.json_response({"error": {"message": "Rate limit reached"}}, status=429, headers=headers)
        if case == "429-date":
            headers = {"Retry-After": formatdate(time.time() + 30, usegmt=True)}
            return web.json_response({"error": {"message": "later"}}, status=429, headers=headers)
        if case == "429-quota":
            error = {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
            return web.json_response({"error": error}, status=429)
        if case == "503":
            return web.json_response({"error": {"message": "overloaded"}}, status=503, headers={"Retry-After": "4"})
        if case == "529":
            return web.json_response({"error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529)
        if case == "504":
            return web.Response(text="upstream timed out", status=504)
        if case == "500":
            return web.Response(text="Internal Server Error", status=500)
        if case == "400":
            message = "Invalid value for 'temperature': must be <= 2. " + "detail " * 200
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)
        if case == "401":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        if case == "sleep":
            await asyncio.sleep(5)
            return web.Response(body=reply_body(), content_type=json)
        if case == "stall-body":
            response = web.StreamResponse(headers={"Content-Length": "1000", "Content-Type": json})
            await response.prepare(request)
            await response.write(reply_body()[:20])
            await asyncio.sleep(5)
            return response
        if case == "reset":
            request.transport.close()
            await asyncio.sleep(0.5)
            return web.Response(status=500)
        if case == "reset-mid-body":
            response = web.StreamResponse(headers={"Content-Length": "1000", "Content-Type": json})
            await response.prepare(request)
            await response.write(reply_body()[:20])
            await asyncio.sleep(0.01)
            request.transport.close()
            return response
        if case == "not-json":
            return web.Response(text="<html>Bad Gateway</html>", content_type="text/html")
        if case == "truncated":
            return web.Response(body=reply_body()[:-15], content_type=json)
        if case == "no-choices":
            return web.json_response({"id": "c1", "object": "chat.completion"})
        if case == "embed-ok":
            data = [{"index": 1, "embedding": [0.5, 0.25]}, {"index": 0, "embedding": [1.0, 2.0]}]
            return web.json_response({"data": data, "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        return web.Response(status=404, text=f"unknown case {case}")


@pytest.fixture
async def fake_provider(loopback_http) -> FakeProvider:
    provider = FakeProvider()
    app = web.Application()
    app.router.add_post("/{case}/v1/chat/completions", provider.handle)
    app.router.add_post("/{case}/v1/embeddings", provider.handle)
    provider.base = await loopback_http(app)
    return provider


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    """Build clients for a test; any the test leaves open are closed afterwards."""
    clients: list[OpenAIClient] = []

    def make(url: str, **kwargs: Any) -> OpenAIClient:
        provider_fields = {k: kwargs.pop(k) for k in ("api_key_env", "extra_headers", "timeout_s") if k in kwargs}
        client = OpenAIClient(ProviderConfig(name="p", base_url=url, **provider_fields), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def _chat_error(client: OpenAIClient) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await client.chat(REQUEST)
    await client.aclose()
    return info.value


async def test_successful_chat_returns_text_usage_latency_and_sends_params(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("ok"))
    reply = await client.chat(REQUEST)
    await client.aclose()
    assert reply.text == "hi there"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.finish_reason) == (7, 3, "stop")
    assert 0 < reply.latency_s < 1
    sent = fake_provider.requests[0]
    assert sent["path"] == "/ok/v1/chat/completions"
    assert sent["body"] == {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.5,
    }
    assert sent["headers"]["Content-Type"] == "application/json"


async def test_json_schema_is_sent_as_strict_response_format(fake_provider, make_client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    request = ChatRequest(model="m", messages=REQUEST.messages, json_schema=schema, schema_name="person")
    client = make_client(fake_provider.url("ok"))
    await client.chat(request)
    await client.aclose()
    assert fake_provider.requests[0]["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": schema, "strict": True},
    }


async def test_rate_limit_headers_are_parsed_on_success(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("ratelimit-headers"))
    info = (await client.chat(REQUEST)).rate_limit
    await client.aclose()
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s) == (60, 59, 3723.5)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s) == (150000, 0, 360.0)
    assert info.exhausted_until_s == 360.0


async def test_429_with_retry_after_seconds_is_rate_limited(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("429-seconds")))
    assert type(error) is RateLimited
    assert (error.status, error.retry_after_s, error.retryable) == (429, 7.0, True)
    assert "Rate limit reached" in str(error)
    assert error.latency_s > 0


async def test_429_prefers_retry_after_ms_and_carries_rate_limit(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("429-ms")))
    assert type(error) is RateLimited
    assert error.retry_after_s == pytest.approx(1.5)
    assert error.rate_limit.remaining_requests == 0


async def test_429_with_http_date_retry_after(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("429-date")))
    assert type(error) is RateLimited
    assert 28.0 <= error.retry_after_s <= 31.0


async def test_429_insufficient_quota_is_a_refused_key_not_retried(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("429-quota")))
    assert type(error) is KeyRejected and error.endpoint_wide
    assert (error.status, error.retryable, error.outcome) == (429, False, Outcome.CLIENT_ERROR)
    assert "quota" in str(error) and "add credit" in error.advice


@pytest.mark.parametrize(("case", "retry_after"), [("503", 4.0), ("529", None)])
async def test_503_and_529_are_overloaded(fake_provider, make_client, case: str, retry_after: float | None) -> None:
    error = await _chat_error(make_client(fake_provider.url(case)))
    assert type(error) is Overloaded
    assert (error.status, error.retry_after_s) == (int(case), retry_after)


async def test_500_is_a_retryable_server_error(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("500")))
    assert type(error) is ServerError
    assert (error.status, error.retryable) == (500, True)


async def test_a_gateways_504_is_a_transient_server_error(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("504")))
    assert type(error) is ServerError
    assert error.status == 504


async def test_400_keeps_the_provider_message_truncated(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("400")))
    assert type(error) is ClientRequestError
    assert error.status == 400
    assert "Invalid value for 'temperature': must be <= 2." in str(error)
    assert len(str(error)) <= 520


async def test_401_is_a_refused_key(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("401")))
    assert type(error) is KeyRejected and error.endpoint_wide
    assert (error.status, error.reason) == (401, "401 Unauthorized")
    assert "Incorrect API key provided" in str(error)


async def test_a_refused_keys_advice_names_where_the_key_comes_from(fake_provider, make_client, tmp_path, monkeypatch):
    """The variable (set or not) or the file, never the key; with none configured, how to configure one."""
    url = fake_provider.url("401")
    monkeypatch.delenv("ROWLOOM_TEST_UNSET_KEY", raising=False)
    unset = await _chat_error(make_client(url, api_key_env="ROWLOOM_TEST_UNSET_KEY"))
    assert unset.advice == "set ROWLOOM_TEST_UNSET_KEY (it is not set, so no key was sent)"
    monkeypatch.setenv("ROWLOOM_TEST_SET_KEY", "sk-wrong-key")
    wrong = await _chat_error(make_client(url, api_key_env="ROWLOOM_TEST_SET_KEY"))
    assert wrong.advice.startswith("the key in ROWLOOM_TEST_SET_KEY was refused") and "sk-wrong" not in wrong.advice
    (tmp_path / "key").write_text("sk-from-file\n")
    provider = ProviderConfig(name="p", base_url=url, api_key_file=str(tmp_path / "key"))
    from_file = await _chat_error(OpenAIClient(provider))
    assert f"the key in the file {tmp_path / 'key'} (api_key_file) was refused" in from_file.advice
    none = await _chat_error(make_client(url))
    assert "no key is configured for provider 'p'" in none.advice and "api_key_env" in none.advice


async def test_client_side_timeout_is_a_request_timeout(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("sleep"), timeout_s=0.2))
    assert type(error) is RequestTimeout
    assert error.status is None
    assert 0.15 < error.latency_s < 2.0


async def test_body_that_stalls_past_the_timeout_is_a_request_timeout(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("stall-body"), timeout_s=0.2))
    assert type(error) is RequestTimeout
    assert 0.15 < error.latency_s < 2.0


async def test_explicit_key_replaces_an_authorization_extra_header(fake_provider) -> None:
    provider = ProviderConfig(name="p", base_url=fake_provider.url("ok"), extra_headers={"authorization": "x"})
    client = OpenAIClient(provider, api_key=CANARY_KEY)
    await client.chat(REQUEST)
    await client.aclose()
    sent = [v for k, v in fake_provider.raw_headers[0] if k.lower() == "authorization"]
    assert sent == [f"Bearer {CANARY_KEY}"]


async def test_connection_closed_before_reply_is_a_connection_reset(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("reset")))
    assert type(error) is ConnectionFailed and error.outcome is Outcome.CONNECTION_ERROR
    assert "connection reset" in str(error)


async def test_connection_closed_mid_body_is_a_connection_reset(fake_provider, make_client) -> None:
    error = await _chat_error(make_client(fake_provider.url("reset-mid-body")))
    assert type(error) is ServerError
    assert "connection reset" in str(error)
    assert "truncated" in str(error)


async def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAIClient(ProviderConfig(name="p", base_url=f"http://127.0.0.1:{port}/v1"))
    error = await _chat_error(client)
    assert type(error) is ConnectionFailed and error.outcome is Outcome.CONNECTION_ERROR
    assert "connection refused" in str(error)


@pytest.mark.parametrize(
    ("case", "phrase"),
    [("not-json", "not JSON"), ("truncated", "not JSON"), ("no-choices", "no choices")],
)
async def test_malformed_200_replies_are_server_errors(fake_provider, make_client, case: str, phrase: str) -> None:
    error = await _chat_error(make_client(fake_provider.url(case)))
    assert type(error) is ServerError
    assert error.status == 200
    assert str(error).startswith("malformed reply")
    assert phrase in str(error)


async def test_authorization_is_sent_only_when_the_env_var_is_set(fake_provider, make_client, monkeypatch) -> None:
    monkeypatch.delenv("ROWLOOM_TEST_KEY", raising=False)
    without = make_client(fake_provider.url("ok"), api_key_env="ROWLOOM_TEST_KEY")
    await without.chat(REQUEST)
    await without.aclose()
    monkeypatch.setenv("ROWLOOM_TEST_KEY", CANARY_KEY)
    with_key = make_client(fake_provider.url("ok"), api_key_env="ROWLOOM_TEST_KEY")
    await with_key.chat(REQUEST)
    await with_key.aclose()
    first, second = (r["headers"] for r in fake_provider.requests)
    assert "Authorization" not in first
    assert second["Authorization"] == f"Bearer {CANARY_KEY}"


async def test_extra_headers_are_sent(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("ok"), extra_headers={"X-Org": "acme"})
    await client.chat(REQUEST)
    await client.aclose()
    assert fake_provider.requests[0]["headers"]["X-Org"] == "acme"


async def test_api_key_never_appears_in_repr_str_or_errors(fake_provider, make_client, monkeypatch) -> None:
    monkeypatch.setenv("ROWLOOM_TEST_KEY", CANARY_KEY)
    texts: list[str] = []
    for case in ("401", "429-seconds", "reset", "not-json"):
        client = make_client(fake_provider.url(case), api_key_env="ROWLOOM_TEST_KEY")
        texts += [repr(client), str(client)]
        error = await _chat_error(client)
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        if error.__cause__ is not None:
            texts += [repr(error.__cause__), str(error.__cause__)]
    assert fake_provider.requests[0]["headers"]["Authorization"] == f"Bearer {CANARY_KEY}"
    assert texts
    for text in texts:
        assert CANARY_KEY not in text
    assert repr(client) == f"OpenAIClient(base_url='{fake_provider.url('not-json')}')"


@pytest.mark.parametrize(
    "extra",
    [{"api_key": CANARY_KEY}, {"extra_headers": {"api-key": CANARY_KEY}}],
    ids=["bearer", "azure-header"],
)
def test_key_over_plain_http_to_a_remote_host_is_refused_before_connecting(extra: dict[str, Any]) -> None:
    # Construction is synchronous and happens outside any event loop: no connection can have been made.
    provider_extra = {"extra_headers": extra["extra_headers"]} if "extra_headers" in extra else {}
    provider = ProviderConfig(name="remote", base_url="http://10.1.2.3:8000/v1", **provider_extra)
    with pytest.raises(InsecureTransportError) as info:
        OpenAIClient(provider, api_key=extra.get("api_key"))
    assert isinstance(info.value, ConfigError)
    assert "providers.remote.base_url" in str(info.value)
    assert "https://" in str(info.value)
    assert CANARY_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("base_url", "allow_insecure", "key"),
    [
        ("https://api.example.com/v1", False, CANARY_KEY),
        ("http://10.1.2.3:8000/v1", True, CANARY_KEY),
        ("http://10.1.2.3:8000/v1", False, None),
        ("http://localhost:8000/v1", False, CANARY_KEY),
        ("http://[::1]:8000/v1", False, CANARY_KEY),
    ],
)
def test_secure_or_keyless_or_local_transport_is_allowed(base_url: str, allow_insecure: bool, key: str | None) -> None:
    OpenAIClient(ProviderConfig(name="p", base_url=base_url, allow_insecure=allow_insecure), api_key=key)


async def test_embeddings_return_vectors_in_input_order(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("embed"))
    with pytest.raises(ClientRequestError):  # unknown case answers 404: proves the path is /embeddings
        await client.embed("e", ["a"])
    client = make_client(fake_provider.url("embed-ok"))
    reply = await client.embed("e", ["first", "second"])
    await client.aclose()
    assert reply.vectors == ((1.0, 2.0), (0.5, 0.25))
    assert reply.usage.prompt_tokens == 4
    assert fake_provider.requests[-1]["path"] == "/embed-ok/v1/embeddings"
    assert fake_provider.requests[-1]["body"] == {"model": "e", "input": ["first", "second"]}


async def test_pool_size_bounds_concurrent_connections(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("slow-ok"), pool_size=3)
    await asyncio.gather(*(client.chat(REQUEST) for _ in range(12)))
    await client.aclose()
    assert fake_provider.max_in_flight == 3
    assert len(fake_provider.peers) == 3


async def test_connections_are_kept_alive_between_requests(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("ok"))
    for _ in range(5):
        await client.chat(REQUEST)
    await client.aclose()
    assert len(fake_provider.peers) == 1


async def test_closed_client_refuses_new_requests(fake_provider, make_client) -> None:
    client = make_client(fake_provider.url("ok"))
    await client.chat(REQUEST)
    await client.aclose()
    await client.aclose()
    with pytest.raises(RowloomError, match="closed"):
        await client.chat(REQUEST)
