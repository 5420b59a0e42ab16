"""The OpenAI-compatible chat/embeddings client over aiohttp, and the classification of every reply it gets.

Owns the HTTP session, the request body and turning status/headers/body (or a transport failure) into a
`ChatResponse` or a classified `ProviderError`. Admission, retries and events belong to the callers.
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from rowloom.config.models import ProviderConfig
from rowloom.errors import RowloomError
from rowloom.models.clients.credentials import (
    InsecureTransportError,
    check_transport,
    check_url_credentials,
    key_advice,
    provider_api_key,
    provider_secrets,
    public_url,
    scrub,
)
from rowloom.models.clients.headers import ci_headers, parse_rate_limit, parse_retry_after_s
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    ClientRequestError,
    ConnectionFailed,
    EmbeddingResponse,
    KeyRejected,
    Overloaded,
    ProviderError,
    RateLimited,
    RateLimitInfo,
    ReplyTooLarge,
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
#: How much of a reply body is read at a time (decompressed), so the size cap is checked as it grows.
_READ_CHUNK = 64 * 1024

_NO_USAGE = Usage(known=False)


# ------------------------------------------------------------------------------------------------------------
# Classification: pure functions of (status, headers, body, latency) or of a transport exception.
# ------------------------------------------------------------------------------------------------------------


def _clip(text: str, limit: int = MESSAGE_LIMIT, secrets: Sequence[str] = ()) -> str:
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


def _provider_message(body: bytes, secrets: Sequence[str]) -> str:
    message, _ = _error_fields(body)
    if message is None:
        message = body.decode("utf-8", errors="replace") if body else "(empty body)"
    return _clip(message, secrets=secrets)


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
    detail = _clip(message, secrets=secrets)
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
            f"HTTP {status} redirect to {_clip(location, 200, secrets)}: set base_url to the final URL", **fields
        )
    return ClientRequestError(f"HTTP {status}: {detail}", **fields)


def _malformed(
    what: str, body: bytes, status: int, rate_limit: RateLimitInfo, latency_s: float, secrets: Sequence[str]
) -> ServerError:
    preview = _clip(body.decode("utf-8", errors="replace"), 200, secrets) if body else "(empty body)"
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


def _decode_ok_body(
    status: int, body: bytes, rate_limit: RateLimitInfo, latency_s: float, secrets: Sequence[str]
) -> dict[str, Any] | ProviderError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _malformed(f"body is not JSON ({exc})", body, status, rate_limit, latency_s, secrets)
    if not isinstance(data, dict):
        return _malformed("body is not a JSON object", body, status, rate_limit, latency_s, secrets)
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
    data = _decode_ok_body(status, body, rate_limit, latency_s, secrets)
    if isinstance(data, ProviderError):
        return data
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "error" in data:  # some gateways wrap upstream failures in a 200
            return ServerError(
                f"provider returned an error with HTTP {status}: {_provider_message(body, secrets)}",
                status=status,
                rate_limit=rate_limit,
                latency_s=latency_s,
            )
        return _malformed("no choices", body, status, rate_limit, latency_s, secrets)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return _malformed("choices[0] has no message", body, status, rate_limit, latency_s, secrets)
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(t for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str))
    if not isinstance(content, str):
        refusal = message.get("refusal")
        what = f"no message content (refusal: {_clip(str(refusal), 200, secrets)})" if refusal else "no message content"
        return _malformed(what, body, status, rate_limit, latency_s, secrets)
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
    data = _decode_ok_body(status, body, rate_limit, latency_s, secrets)
    if isinstance(data, ProviderError):
        return data
    items = data.get("data")
    if not isinstance(items, list):
        return _malformed("no data", body, status, rate_limit, latency_s, secrets)
    try:
        ordered = sorted(items, key=lambda item: item.get("index", 0))
        vectors = tuple(tuple(float(x) for x in item["embedding"]) for item in ordered)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        what = f"bad embedding item ({type(exc).__name__})"
        return _malformed(what, body, status, rate_limit, latency_s, secrets)
    if expected is not None and len(vectors) != expected:
        what = f"{len(vectors)} embeddings for {expected} inputs"
        return _malformed(what, body, status, rate_limit, latency_s, secrets)
    return EmbeddingResponse(vectors=vectors, usage=_usage(data), latency_s=latency_s, rate_limit=rate_limit)


def classify_exception(exc: BaseException, latency_s: float) -> ProviderError | None:
    """The `ProviderError` a transport failure means, or None when it is not a provider failure (a bug,
    a cancellation) and must propagate unchanged."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError, aiohttp.ServerTimeoutError and subclasses
        return RequestTimeout(f"timed out after {latency_s:.3f}s ({name})", latency_s=latency_s)
    if not isinstance(exc, aiohttp.ClientError):
        return None
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ClientRequestError(
            f"TLS certificate rejected: {exc}; check base_url or the CA bundle", latency_s=latency_s
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return ClientRequestError(f"invalid URL {exc}: fix the provider's base_url", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ConnectionFailed(f"DNS lookup failed: {exc}", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ConnectionFailed(f"TLS handshake failed: {exc}", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return ConnectionFailed(f"{'connection refused' if refused else 'cannot connect'}: {exc}", latency_s=latency_s)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionFailed("connection reset: server disconnected before the reply", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientPayloadError):  # the server answered, but its body was cut short
        return ServerError(f"connection reset mid-body, reply truncated: {exc}", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientOSError):
        return ConnectionFailed(f"connection reset: {exc}", latency_s=latency_s)
    if isinstance(exc, aiohttp.ClientResponseError):  # unparseable status line / headers
        return ServerError(f"malformed reply: {exc.message}", status=exc.status or None, latency_s=latency_s)
    return ConnectionFailed(f"connection failed: {name}: {exc}", latency_s=latency_s)


# ------------------------------------------------------------------------------------------------------------
# The client.
# ------------------------------------------------------------------------------------------------------------


class OpenAIClient:
    """A `ChatClient` for OpenAI-compatible endpoints (`/chat/completions`, `/embeddings`) over aiohttp.

    One connection pool per client, sized to the concurrency the caller will use (`pool_size`), created lazily
    on the running loop. Raises a classified `ProviderError` for every provider failure; never logs.
    The API key comes from `api_key`, else the environment variable `provider.api_key_env` or the file
    `provider.api_key_file`; with none, no Authorization header is sent.
    """

    __slots__ = (
        "_chat_url",
        "_closed",
        "_embed_url",
        "_headers",
        "_key_advice",
        "_loop",
        "_pool_size",
        "_secrets",
        "_session",
        "_timeout",
        "provider",
    )

    def __init__(self, provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None):
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.provider = provider
        self._pool_size = pool_size
        explicit = api_key is not None
        if api_key is None:
            api_key = provider_api_key(provider)
        self._key_advice = key_advice(provider, api_key, explicit=explicit)
        # Case-insensitive, so an explicit key replaces an `authorization` extra header instead of doubling it.
        headers = CIMultiDict({"Content-Type": "application/json", "Accept": "application/json"})
        headers.update(provider.extra_headers)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        check_transport(provider, api_key)
        check_url_credentials(provider, headers)
        self._headers = headers
        # Credential values, longest first, so a provider that echoes one back never puts it in an error.
        self._secrets = provider_secrets(provider, api_key)
        self._chat_url = f"{provider.base_url}/chat/completions"
        self._embed_url = f"{provider.base_url}/embeddings"
        self._timeout = aiohttp.ClientTimeout(total=provider.timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={public_url(self.provider.base_url)!r})"

    __str__ = __repr__

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None and self._loop is asyncio.get_running_loop():
            return session
        if self._closed:
            raise RowloomError(f"{self!r} is closed; create a new client")
        if session is not None:
            raise RowloomError(f"{self!r} was first used on another event loop; create one client per loop")
        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._timeout,
            raise_for_status=False,
            auto_decompress=True,
        )
        self._loop = asyncio.get_running_loop()
        return session

    async def _post(self, url: str, payload: dict[str, Any]) -> tuple[int, Any, bytes, float]:
        """POST `payload`; (status, headers, body, latency) or a classified transport `ProviderError`."""
        data = orjson.dumps(payload)
        session = self._http()
        start = time.monotonic()
        try:
            async with session.post(url, data=data, allow_redirects=False) as resp:
                body = await self._read_capped(resp, start)
                return resp.status, resp.headers, body, time.monotonic() - start
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = classify_exception(exc, time.monotonic() - start)
            if error is None:  # pragma: no cover - classify_exception covers both caught families
                raise
            # aiohttp response errors carry the request headers (the key); do not chain those.
            cause = None if isinstance(exc, aiohttp.ClientResponseError) else exc
            raise self._scrub(error) from cause

    async def _read_capped(self, resp: aiohttp.ClientResponse, start: float) -> bytes:
        """The body, decompressed, read a chunk at a time; `ReplyTooLarge` as soon as it passes `max_reply_bytes`
        (leaving the rest unread and the connection closed, so a gzip bomb stops at the cap)."""
        limit = self.provider.max_reply_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                encoded = resp.headers.get("Content-Encoding")
                raise ReplyTooLarge(
                    f"reply body larger than max_reply_bytes ({limit:,} bytes"
                    f"{f', after {encoded} decompression' if encoded else ''}); reading stopped there. Raise the "
                    f"provider's max_reply_bytes if this endpoint really sends replies that large",
                    status=resp.status,
                    latency_s=time.monotonic() - start,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _scrub(self, error: ProviderError) -> ProviderError:
        """The error with any credential the provider echoed back (some do, in 401 bodies) redacted, and a refused
        key's advice saying where the key came from (only the client knows)."""
        if isinstance(error, KeyRejected) and not error.advice:
            error.advice = self._key_advice
        message = str(error)
        if any(secret in message for secret in self._secrets):
            error.args = (scrub(message, self._secrets),)
        return error

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one chat completion; the reply, or a classified `ProviderError`."""
        payload = {**request.params, "model": request.model, "messages": request.messages}
        if request.json_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": True},
            }
        status, headers, body, latency = await self._post(self._chat_url, payload)
        result = classify_chat_response(status, headers, body, latency, secrets=self._secrets)
        if isinstance(result, ProviderError):
            raise self._scrub(result)
        return result

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        """Embed `inputs` in one call; vectors in input order, or a classified `ProviderError`."""
        status, headers, body, latency = await self._post(self._embed_url, {"model": model, "input": inputs})
        result = classify_embedding_response(
            status, headers, body, latency, expected=len(inputs), secrets=self._secrets
        )
        if isinstance(result, ProviderError):
            raise self._scrub(result)
        return result

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
