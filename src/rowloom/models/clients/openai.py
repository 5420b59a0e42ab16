"""The OpenAI-compatible chat/embeddings client, and the classification of every reply it gets.

Owns the request body and turning status/headers/body (or a transport failure) into a `ChatResponse` or a
classified `ProviderError`; the HTTP session is `transport.HttpTransport`'s. Admission, retries and events belong
to the callers. Other API styles (`anthropic`, `azure`) reuse the status and transport classification here.
"""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rowloom.config.models import ProviderConfig
from rowloom.models.clients.credentials import InsecureTransportError, key_advice, provider_api_key, scrub
from rowloom.models.clients.headers import ci_headers, parse_rate_limit, parse_retry_after_s
from rowloom.models.clients.transport import HttpTransport, classify_exception
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    ClientRequestError,
    EmbeddingResponse,
    KeyRejected,
    Overloaded,
    ProviderError,
    RateLimited,
    RateLimitInfo,
    RequestTimeout,
    ServerError,
    Usage,
)

__all__ = [
    "InsecureTransportError",
    "OpenAIClient",
    "classify_chat_response",
    "classify_embedding_response",
    "classify_exception",
    "classify_status",
    "key_advice",
    "provider_api_key",
]

#: How much of a provider's error message (or of an unparseable body) an error keeps.
MESSAGE_LIMIT = 500

_NO_USAGE = Usage(known=False)


# ------------------------------------------------------------------------------------------------------------
# Classification: pure functions of (status, headers, body, latency) or of a transport exception.
# ------------------------------------------------------------------------------------------------------------


def clip(text: str, limit: int = MESSAGE_LIMIT, secrets: Sequence[str] = ()) -> str:
    # Scrubbed before it is cut: a cut first could leave the head of an echoed key that no longer matches.
    text = scrub(text, secrets).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(message, code or type) of an error body in the OpenAI shape or a common variant; None if absent."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("code") or error.get("type")
        return (str(message) if message is not None else None), (str(kind) if kind is not None else None)
    if isinstance(error, str):
        return error, None
    for key in ("message", "detail"):  # vLLM / FastAPI style
        if isinstance(data.get(key), str):
            kind = data.get("code") or data.get("type")
            return data[key], (str(kind) if kind is not None else None)
    return None, None


def provider_message(body: bytes, secrets: Sequence[str]) -> str:
    message, _ = _error_fields(body)
    if message is None:
        message = body.decode("utf-8", errors="replace") if body else "(empty body)"
    return clip(message, secrets=secrets)


def classify_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    *,
    rate_limit: RateLimitInfo | None = None,
    secrets: Sequence[str] = (),
) -> ProviderError | None:
    """The error a non-2xx reply means, or None for 2xx. Pure: no I/O. The provider's words are kept with every
    credential in `secrets` (longest first) redacted before they are cut to length.

    429 → RateLimited (except `insufficient_quota` → KeyRejected); 401/403 → KeyRejected (no request can get
    past a refused key); 503/529 → Overloaded; 408 → RequestTimeout; other 5xx → ServerError (a gateway's
    502/504 too: transient, no capacity signal); other statuses → ClientRequestError.
    """
    if 200 <= status < 300:
        return None
    headers = ci_headers(headers)
    if rate_limit is None:
        rate_limit = parse_rate_limit(headers)
    retry_after = parse_retry_after_s(headers)
    message, kind = _error_fields(body)
    if message is None:
        message = body.decode("utf-8", errors="replace") if body else "(empty body)"
    detail = clip(message, secrets=secrets)
    fields: dict[str, Any] = {
        "status": status,
        "retry_after_s": retry_after,
        "rate_limit": rate_limit,
        "latency_s": latency_s,
    }
    if status == 429:
        if kind == "insufficient_quota":
            return KeyRejected(
                f"HTTP 429 insufficient_quota: the account's quota is exhausted; add credit or change key ({detail})",
                reason="429 insufficient_quota",
                advice="the account's quota is exhausted; add credit, or use a key of another account",
                **fields,
            )
        return RateLimited(f"HTTP 429 rate limited: {detail}", **fields)
    if status in (503, 529):
        return Overloaded(f"HTTP {status} overloaded: {detail}", **fields)
    if status == 408:
        return RequestTimeout(f"HTTP {status} timeout: {detail}", **fields)
    if status in (502, 504):  # a gateway lost its upstream: retried quickly, not a sign of our load
        return ServerError(f"HTTP {status} gateway error: {detail}", **fields)
    if status >= 500:
        return ServerError(f"HTTP {status} server error: {detail}", **fields)
    if status in (401, 403):
        reason = f"{status} {http.HTTPStatus(status).phrase}"
        return KeyRejected(f"HTTP {reason}: {detail}", reason=reason, **fields)
    if 300 <= status < 400:
        location = headers.get("location", "?")
        return ClientRequestError(
            f"HTTP {status} redirect to {clip(location, 200, secrets)}: set base_url to the final URL", **fields
        )
    return ClientRequestError(f"HTTP {status}: {detail}", **fields)


def malformed(
    what: str, body: bytes, status: int, rate_limit: RateLimitInfo, latency_s: float, secrets: Sequence[str]
) -> ServerError:
    preview = clip(body.decode("utf-8", errors="replace"), 200, secrets) if body else "(empty body)"
    return ServerError(
        f"malformed reply: {what}; body starts: {preview}",
        status=status,
        rate_limit=rate_limit,
        latency_s=latency_s,
    )


def _usage(data: dict[str, Any]) -> Usage:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return _NO_USAGE
    return Usage(
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        cached_tokens=_count(usage.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=_count(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


def _count(block: Any, name: str) -> int:
    """A token count of a usage block; 0 when the block or the count is missing or not an integer (bools too)."""
    value = block.get(name) if isinstance(block, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def decode_ok_body(
    status: int, body: bytes, rate_limit: RateLimitInfo, latency_s: float, secrets: Sequence[str]
) -> dict[str, Any] | ProviderError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return malformed(f"body is not JSON ({exc})", body, status, rate_limit, latency_s, secrets)
    if not isinstance(data, dict):
        return malformed("body is not a JSON object", body, status, rate_limit, latency_s, secrets)
    return data


def classify_chat_response(
    status: int, headers: Mapping[str, str], body: bytes, latency_s: float, *, secrets: Sequence[str] = ()
) -> ChatResponse | ProviderError:
    """Turn one chat-completions reply into a `ChatResponse`, or the `ProviderError` it means. Pure: no I/O.

    A 2xx whose body is not JSON, or lacks `choices[0].message.content`, is a ServerError("malformed reply").
    """
    rate_limit = parse_rate_limit(headers)
    error = classify_status(status, headers, body, latency_s, rate_limit=rate_limit, secrets=secrets)
    if error is not None:
        return error
    data = decode_ok_body(status, body, rate_limit, latency_s, secrets)
    if isinstance(data, ProviderError):
        return data
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "error" in data:  # some gateways wrap upstream failures in a 200
            return ServerError(
                f"provider returned an error with HTTP {status}: {provider_message(body, secrets)}",
                status=status,
                rate_limit=rate_limit,
                latency_s=latency_s,
            )
        return malformed("no choices", body, status, rate_limit, latency_s, secrets)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return malformed("choices[0] has no message", body, status, rate_limit, latency_s, secrets)
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(t for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str))
    if not isinstance(content, str):
        refusal = message.get("refusal")
        what = f"no message content (refusal: {clip(str(refusal), 200, secrets)})" if refusal else "no message content"
        return malformed(what, body, status, rate_limit, latency_s, secrets)
    finish = choice.get("finish_reason")
    return ChatResponse(
        text=content,
        usage=_usage(data),
        latency_s=latency_s,
        rate_limit=rate_limit,
        finish_reason=finish if isinstance(finish, str) else None,
    )


def classify_embedding_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    *,
    expected: int | None = None,
    secrets: Sequence[str] = (),
) -> EmbeddingResponse | ProviderError:
    """Turn one embeddings reply into an `EmbeddingResponse` (vectors in input order) or its `ProviderError`.

    `expected` is the number of inputs; a reply with another count is malformed.
    """
    rate_limit = parse_rate_limit(headers)
    error = classify_status(status, headers, body, latency_s, rate_limit=rate_limit, secrets=secrets)
    if error is not None:
        return error
    data = decode_ok_body(status, body, rate_limit, latency_s, secrets)
    if isinstance(data, ProviderError):
        return data
    items = data.get("data")
    if not isinstance(items, list):
        return malformed("no data", body, status, rate_limit, latency_s, secrets)
    try:
        ordered = sorted(items, key=lambda item: item.get("index", 0))
        vectors = tuple(tuple(float(x) for x in item["embedding"]) for item in ordered)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        what = f"bad embedding item ({type(exc).__name__})"
        return malformed(what, body, status, rate_limit, latency_s, secrets)
    if expected is not None and len(vectors) != expected:
        what = f"{len(vectors)} embeddings for {expected} inputs"
        return malformed(what, body, status, rate_limit, latency_s, secrets)
    return EmbeddingResponse(vectors=vectors, usage=_usage(data), latency_s=latency_s, rate_limit=rate_limit)


# ------------------------------------------------------------------------------------------------------------
# The client.
# ------------------------------------------------------------------------------------------------------------


def response_format(request: ChatRequest) -> dict[str, Any] | None:
    """The `response_format` that asks for a reply valid against the request's JSON Schema (None without one)."""
    if request.json_schema is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": True},
    }


class OpenAIClient(HttpTransport):
    """A `ChatClient` for OpenAI-compatible endpoints (`/chat/completions`, `/embeddings`) over aiohttp.

    The API key comes from `api_key`, else the environment variable `provider.api_key_env` or the file
    `provider.api_key_file`, and goes in `Authorization: Bearer`; with none, no Authorization header is sent.
    """

    def __init__(self, provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None):
        super().__init__(provider, pool_size=pool_size, api_key=api_key)
        self._chat_url = f"{provider.base_url}/chat/completions"
        self._embed_url = f"{provider.base_url}/embeddings"

    def key_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def chat_url(self, request: ChatRequest) -> str:
        """Where a chat completion goes."""
        return self._chat_url

    def embed_url(self, model: str) -> str:
        """Where an embeddings request goes."""
        return self._embed_url

    def chat_payload(self, request: ChatRequest) -> dict[str, Any]:
        """The body of one chat completion."""
        payload = {**request.params, "model": request.model, "messages": request.messages}
        if (fmt := response_format(request)) is not None:
            payload["response_format"] = fmt
        return payload

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one chat completion; the reply, or a classified `ProviderError`."""
        status, headers, body, latency = await self._post(self.chat_url(request), self.chat_payload(request))
        result = classify_chat_response(status, headers, body, latency, secrets=self._secrets)
        if isinstance(result, ProviderError):
            raise self._scrub(result)
        return result

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        """Embed `inputs` in one call; vectors in input order, or a classified `ProviderError`."""
        status, headers, body, latency = await self._post(self.embed_url(model), {"model": model, "input": inputs})
        result = classify_embedding_response(
            status, headers, body, latency, expected=len(inputs), secrets=self._secrets
        )
        if isinstance(result, ProviderError):
            raise self._scrub(result)
        return result
