"""Anthropic's Messages API adapter on request/response pairs written from Anthropic's public API reference:
request building (system, stop sequences, a forced tool for structured output), replies (text, tool_use, usage
with cache tokens), errors (429, 529 overloaded, 401, 400), rate-limit headers and malformed replies."""

from __future__ import annotations

import orjson
import pytest

from rowloom.config.models import ProviderConfig
from rowloom.models.clients import client_for
from rowloom.models.clients.anthropic import (
    AnthropicClient,
    build_messages_request,
    classify_messages_response,
    parse_anthropic_rate_limit,
)
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    KeyRejected,
    Outcome,
    Overloaded,
    RateLimited,
    ServerError,
)

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
NOW = 1_760_000_000.0  # 2025-10-09T08:53:20Z


def test_system_messages_become_the_top_level_system_and_stop_becomes_stop_sequences():
    request = ChatRequest(
        model="claude-sonnet-4-5",
        messages=({"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}),
        params={"max_tokens": 256, "temperature": 0.2, "stop": ["END"], "seed": 3, "top_k": 5},
    )
    body = build_messages_request(request)
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "Be terse.",
        "max_tokens": 256,
        "temperature": 0.2,
        "top_k": 5,
        "stop_sequences": ["END"],
    }


def test_a_json_schema_is_one_forced_tool_and_re_asks_keep_the_conversation():
    request = ChatRequest(
        model="m",
        messages=(
            {"role": "user", "content": "Rate it"},
            {"role": "assistant", "content": '{"score": "x"}'},
            {"role": "user", "content": "That reply is invalid"},
        ),
        params={"max_tokens": 64},
        json_schema=SCHEMA,
        schema_name="review",
    )
    body = build_messages_request(request)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["tools"][0]["name"] == "review" and body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "review"}


# A reply as the API reference shows it, with prompt caching in use.
TEXT_REPLY = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "output_tokens": 503,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1800,
    },
}
TOOL_REPLY = {
    **TEXT_REPLY,
    "content": [
        {"type": "text", "text": "Here is the record."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "review", "input": {"score": 4}},
    ],
    "stop_reason": "tool_use",
}
HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2025-10-09T08:53:21Z",
    "anthropic-ratelimit-input-tokens-limit": "30000",
    "anthropic-ratelimit-input-tokens-remaining": "28000",
    "anthropic-ratelimit-input-tokens-reset": "2025-10-09T08:53:22Z",
    "anthropic-ratelimit-output-tokens-limit": "8000",
    "anthropic-ratelimit-output-tokens-remaining": "7000",
    "anthropic-ratelimit-output-tokens-reset": "2025-10-09T08:53:25Z",
    "request-id": "req_018EeWyXxfu5pfWkrYcMdjWG",
}


def test_a_text_reply_with_cache_tokens_maps_onto_the_one_usage():
    reply = classify_messages_response(200, HEADERS, orjson.dumps(TEXT_REPLY), 0.4, now=NOW)
    assert isinstance(reply, ChatResponse)
    assert reply.text == "Hi! My name is Claude." and reply.finish_reason == "end_turn"
    # Anthropic counts cache reads and writes apart from input_tokens: the prompt is all three.
    assert reply.usage.prompt_tokens == 2095 + 100 + 1800 and reply.usage.cached_tokens == 1800
    assert reply.usage.completion_tokens == 503 and reply.usage.known
    limits = reply.rate_limit
    assert (limits.limit_requests, limits.remaining_requests, limits.reset_requests_s) == (50, 49, 1.0)
    # No combined token budget: the tighter of input and output (fewest remaining).
    assert (limits.limit_tokens, limits.remaining_tokens, limits.reset_tokens_s) == (8000, 7000, 5.0)


def test_a_tool_call_is_the_structured_reply_as_json_text():
    reply = classify_messages_response(200, {}, orjson.dumps(TOOL_REPLY), 0.4)
    assert isinstance(reply, ChatResponse) and orjson.loads(reply.text) == {"score": 4}
    assert reply.finish_reason == "tool_use"


def test_a_reply_without_usage_is_unknown_usage():
    reply = classify_messages_response(200, {}, orjson.dumps({**TEXT_REPLY, "usage": None}), 0.1)
    assert isinstance(reply, ChatResponse) and not reply.usage.known


def _error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "outcome"),
    [
        (429, _error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
         {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}, RateLimited, Outcome.RATE_LIMITED),
        (529, _error("overloaded_error", "Overloaded"), {}, Overloaded, Outcome.OVERLOADED),
        (401, _error("authentication_error", "invalid x-api-key"), {}, KeyRejected, Outcome.CLIENT_ERROR),
        (500, _error("api_error", "Internal server error"), {}, ServerError, Outcome.SERVER_ERROR),
    ],
)  # fmt: skip
def test_errors_are_classified_as_every_adapter_classifies_them(status, body, headers, kind, outcome):
    error = classify_messages_response(status, headers, body, 0.2, now=NOW)
    assert isinstance(error, kind) and error.outcome is outcome and error.status == status
    if status == 429:
        assert error.retry_after_s == 7.0 and error.rate_limit.remaining_requests == 0
        assert "per-minute rate limit" in str(error)


def test_a_bad_request_names_the_field_in_the_providers_words():
    body = _error("invalid_request_error", "max_tokens: Field required")
    error = classify_messages_response(400, {}, body, 0.1)
    assert error.outcome is Outcome.CLIENT_ERROR and not error.retryable
    assert "max_tokens: Field required" in str(error)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>oops</html>", "not JSON"),
        (orjson.dumps({**TEXT_REPLY, "content": "text"}), "no content"),
        (orjson.dumps({**TEXT_REPLY, "content": [{"type": "thinking", "thinking": "hm"}]}), "no text or tool_use"),
        (orjson.dumps({**TOOL_REPLY, "content": [{"type": "tool_use", "name": "review", "input": "x"}]}),
         "without an input object"),
        (_error("overloaded_error", "Overloaded"), "provider returned an error"),
        (b'{"content": [{"type": "tool_use", "input": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}]}",
         "nested too deep"),  # found by the hostile-reply fuzz: orjson re-encodes at most 255 levels
    ],
)  # fmt: skip
def test_malformed_ok_replies_are_server_errors(body, what):
    error = classify_messages_response(200, {}, body, 0.1)
    assert isinstance(error, ServerError) and what in str(error)


def test_reset_times_in_the_past_or_unparseable_are_safe():
    limits = parse_anthropic_rate_limit(
        {"anthropic-ratelimit-requests-reset": "2020-01-01T00:00:00Z", "anthropic-ratelimit-tokens-reset": "soon"},
        now=NOW,
    )
    assert limits.reset_requests_s == 0.0 and limits.reset_tokens_s is None
    assert parse_anthropic_rate_limit({"x-ratelimit-limit-requests": "5"}).limit_requests is None


def test_the_client_sends_the_key_and_version_in_anthropics_headers(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-123")
    provider = ProviderConfig(name="claude", type="anthropic", api_key_env="ANTHROPIC_TEST_KEY")
    client = client_for(provider)
    assert isinstance(client, AnthropicClient)
    assert client._headers["x-api-key"] == "sk-ant-123" and "Authorization" not in client._headers
    assert client._headers["anthropic-version"] == "2023-06-01"
    assert client._url == "https://api.anthropic.com/v1/messages"
