"""Anthropic's Messages API (`POST {base_url}/messages`): request building and reply classification, pure, and the
client that sends them.

Structured output is a forced tool call: the column's JSON Schema is the one tool's `input_schema`, and the tool's
`input` comes back as the reply's JSON text, validated and re-asked like any structured reply. Usage maps onto the
one `Usage` every adapter returns: prompt tokens are `input_tokens` plus the cache's read and written tokens (which
Anthropic counts apart), `cached_tokens` the cache reads. Overload and budget signals: 429 and 529 (overloaded)
are classified like OpenAI's 429 and 503; `retry-after`; the `anthropic-ratelimit-*` headers fill the same
`RateLimitInfo` as OpenAI's `x-ratelimit-*`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from rowloom.config.models import ProviderConfig
from rowloom.errors import RowloomError
from rowloom.models.clients.headers import ci_headers
from rowloom.models.clients.openai import classify_status, clip, decode_ok_body, malformed, provider_message
from rowloom.models.clients.transport import HttpTransport
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    ProviderError,
    RateLimitInfo,
    ServerError,
    Usage,
)

__all__ = ["AnthropicClient", "build_messages_request", "classify_messages_response", "parse_anthropic_rate_limit"]

#: Inference parameters the Messages API takes as they are (others of OpenAI's shape are mapped or refused).
_PASSED = ("max_tokens", "temperature", "top_p", "top_k", "metadata")
_NO_USAGE = Usage(known=False)
_NO_RATE_LIMIT = RateLimitInfo()


def build_messages_request(request: ChatRequest) -> dict[str, Any]:
    """The Messages API body of a chat request: system messages as the top-level `system`, `stop` as
    `stop_sequences`, and a JSON Schema as one forced tool whose input is the structured reply."""
    system = [str(m.get("content", "")) for m in request.messages if m.get("role") == "system"]
    messages = [
        {"role": m.get("role"), "content": str(m.get("content", ""))}
        for m in request.messages
        if m.get("role") != "system"
    ]
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if system:
        body["system"] = "\n\n".join(system)
    params = dict(request.params)
    stop = params.pop("stop", None)
    for name in _PASSED:
        if name in params:
            body[name] = params.pop(name)
    if stop:
        body["stop_sequences"] = list(stop) if isinstance(stop, list | tuple) else [stop]
    params.pop("seed", None)  # refused at validation; a seed in `extra` is the user's to send
    body.update(params)  # `extra` and anything else given: passed through
    if request.json_schema is not None:
        body["tools"] = [
            {
                "name": request.schema_name,
                "description": "Record the reply: its input is the whole answer, valid against this schema.",
                "input_schema": request.json_schema,
            }
        ]
        body["tool_choice"] = {"type": "tool", "name": request.schema_name}
    return body


def _reset_s(value: str | None, now: float) -> float | None:
    """Seconds until an RFC 3339 reset time (Anthropic's `*-reset` headers), never negative; None if unparseable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def _count_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_anthropic_rate_limit(headers: Mapping[str, str], *, now: float | None = None) -> RateLimitInfo:
    """The `anthropic-ratelimit-requests-*` and `-tokens-*` budget (falling back to the tighter of `-input-tokens-*`
    and `-output-tokens-*` when the combined one is absent), resets in seconds from `now` (the wall clock)."""
    headers = ci_headers(headers)
    if not any(name.lower().startswith("anthropic-ratelimit-") for name in headers):
        return _NO_RATE_LIMIT
    now = time.time() if now is None else now
    prefix = "anthropic-ratelimit-"

    def budget(kind: str) -> tuple[int | None, int | None, float | None]:
        return (
            _count_header(headers, f"{prefix}{kind}-limit"),
            _count_header(headers, f"{prefix}{kind}-remaining"),
            _reset_s(headers.get(f"{prefix}{kind}-reset"), now),
        )

    tokens = budget("tokens")
    if tokens == (None, None, None):  # the combined budget is absent: the tighter of input and output
        split = [b for b in (budget("input-tokens"), budget("output-tokens")) if b[1] is not None]
        tokens = min(split, key=lambda b: b[1] or 0) if split else tokens
    requests = budget("requests")
    return RateLimitInfo(
        limit_requests=requests[0],
        remaining_requests=requests[1],
        reset_requests_s=requests[2],
        limit_tokens=tokens[0],
        remaining_tokens=tokens[1],
        reset_tokens_s=tokens[2],
    )


def _usage(data: dict[str, Any]) -> Usage:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return _NO_USAGE

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    read, written = count("cache_read_input_tokens"), count("cache_creation_input_tokens")
    return Usage(
        prompt_tokens=count("input_tokens") + read + written,
        completion_tokens=count("output_tokens"),
        cached_tokens=read,
    )


def classify_messages_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    *,
    secrets: Sequence[str] = (),
    now: float | None = None,
) -> ChatResponse | ProviderError:
    """Turn one Messages API reply into a `ChatResponse` (a tool call's input as JSON text), or the `ProviderError`
    it means. Pure: no I/O. Errors are classified by status as every adapter's are (429 → rate limited,
    529 → overloaded, 401/403 → the key); a 2xx without text or a tool call is a malformed reply."""
    rate_limit = parse_anthropic_rate_limit(headers, now=now)
    error = classify_status(status, headers, body, latency_s, rate_limit=rate_limit, secrets=secrets)
    if error is not None:
        return error
    data = decode_ok_body(status, body, rate_limit, latency_s, secrets)
    if isinstance(data, ProviderError):
        return data
    if data.get("type") == "error":  # an error document with a 2xx: a proxy's doing
        return ServerError(
            f"provider returned an error with HTTP {status}: {provider_message(body, secrets)}",
            status=status,
            rate_limit=rate_limit,
            latency_s=latency_s,
        )
    content = data.get("content")
    if not isinstance(content, list):
        return malformed("no content", body, status, rate_limit, latency_s, secrets)
    blocks = [b for b in content if isinstance(b, dict)]
    tool = next((b for b in blocks if b.get("type") == "tool_use"), None)
    if tool is not None:
        if not isinstance(tool.get("input"), dict):
            return malformed("tool_use block without an input object", body, status, rate_limit, latency_s, secrets)
        try:
            text = orjson.dumps(tool["input"]).decode()
        except TypeError:  # nested past orjson's depth limit (255): not JSON any parser downstream reads
            return malformed("tool_use input nested too deep to encode", body, status, rate_limit, latency_s, secrets)
    else:
        texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
        if not texts:
            kinds = ", ".join(sorted({str(b.get("type")) for b in blocks})) or "none"
            what = f"no text or tool_use content (blocks: {clip(kinds, 100, secrets)})"
            return malformed(what, body, status, rate_limit, latency_s, secrets)
        text = "".join(texts)
    stop = data.get("stop_reason")
    return ChatResponse(
        text=text,
        usage=_usage(data),
        latency_s=latency_s,
        rate_limit=rate_limit,
        finish_reason=stop if isinstance(stop, str) else None,
    )


class AnthropicClient(HttpTransport):
    """A `ChatClient` for Anthropic's Messages API: the key in `x-api-key`, the version in `anthropic-version`."""

    def __init__(self, provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None):
        super().__init__(provider, pool_size=pool_size, api_key=api_key)
        self._url = f"{provider.base_url}/messages"

    def key_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def fixed_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.provider.version or ""}

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one Messages API request; the reply, or a classified `ProviderError`."""
        status, headers, body, latency = await self._post(self._url, build_messages_request(request))
        result = classify_messages_response(status, headers, body, latency, secrets=self._secrets)
        if isinstance(result, ProviderError):
            raise self._scrub(result)
        return result

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        raise RowloomError(
            f"provider {self.provider.name!r} speaks Anthropic's Messages API, which has no embeddings; "
            "give the embedding column a model on an OpenAI-compatible provider"
        )
