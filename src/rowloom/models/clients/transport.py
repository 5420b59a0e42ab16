"""The HTTP side every provider adapter shares: one aiohttp session per client, the request's credential headers,
a size-capped body read, and credentials scrubbed from every error.

An adapter subclasses `HttpTransport`, says how its API carries the key (`key_headers`) and implements `chat` and
`embed` with its own request building and reply classification. Never logs; raises classified `ProviderError`s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from rowloom.config.models import ProviderConfig
from rowloom.errors import RowloomError
from rowloom.models.clients.credentials import (
    check_transport,
    check_url_credentials,
    key_advice,
    provider_api_key,
    provider_secrets,
    public_url,
    scrub,
)
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    ClientRequestError,
    ConnectionFailed,
    EmbeddingResponse,
    KeyRejected,
    ProviderError,
    ReplyTooLarge,
    RequestTimeout,
    ServerError,
)

#: How much of a reply body is read at a time (decompressed), so the size cap is checked as it grows.
_READ_CHUNK = 64 * 1024


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


class HttpTransport:
    """POSTs JSON to one provider over a pooled aiohttp session and returns what came back, or the classified
    transport failure.

    One connection pool per client, sized to the concurrency the caller will use (`pool_size`), created lazily
    on the running loop. The API key comes from `api_key`, else the provider's `api_key_env` or `api_key_file`;
    with none, no key header is sent.
    """

    def __init__(self, provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None):
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.provider = provider
        self._pool_size = pool_size
        explicit = api_key is not None
        if api_key is None:
            api_key = provider_api_key(provider)
        self._key_advice = key_advice(provider, api_key, explicit=explicit)
        # Case-insensitive, so an explicit key replaces a same-named extra header instead of doubling it.
        headers = CIMultiDict({"Content-Type": "application/json", "Accept": "application/json"})
        headers.update(self.fixed_headers())
        headers.update(provider.extra_headers)
        if api_key:
            headers.update(self.key_headers(api_key))
        check_transport(provider, api_key)
        check_url_credentials(provider, headers)
        self._headers = headers
        # Credential values, longest first, so a provider that echoes one back never puts it in an error.
        self._secrets = provider_secrets(provider, api_key)
        self._timeout = aiohttp.ClientTimeout(total=provider.timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def key_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the API key in this API."""
        raise NotImplementedError

    def fixed_headers(self) -> dict[str, str]:
        """Headers this API wants on every request besides the key (e.g. a version)."""
        return {}

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={public_url(self.provider.base_url)!r})"

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
        return await self._send("POST", url, data=orjson.dumps(payload))

    async def _get(self, url: str, *, max_bytes: int | None = None) -> tuple[int, Any, bytes, float]:
        """GET `url`; (status, headers, body, latency) or a classified transport `ProviderError`. `max_bytes`
        replaces the provider's `max_reply_bytes` cap (a file of many replies)."""
        return await self._send("GET", url, max_bytes=max_bytes)

    async def _post_form(self, url: str, form: aiohttp.FormData) -> tuple[int, Any, bytes, float]:
        """POST a multipart form (a file upload); its own Content-Type replaces the session's JSON one."""
        body = form()
        return await self._send("POST", url, data=body, headers={"Content-Type": body.content_type})

    async def _send(
        self,
        method: str,
        url: str,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, Any, bytes, float]:
        session = self._http()
        start = time.monotonic()
        try:
            async with session.request(method, url, data=data, headers=headers, allow_redirects=False) as resp:
                body = await self._read_capped(resp, start, max_bytes)
                return resp.status, resp.headers, body, time.monotonic() - start
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = classify_exception(exc, time.monotonic() - start)
            if error is None:  # pragma: no cover - classify_exception covers both caught families
                raise
            # aiohttp response errors carry the request headers (the key); do not chain those.
            cause = None if isinstance(exc, aiohttp.ClientResponseError) else exc
            raise self._scrub(error) from cause

    async def _read_capped(self, resp: aiohttp.ClientResponse, start: float, limit: int | None = None) -> bytes:
        """The body, decompressed, read a chunk at a time; `ReplyTooLarge` as soon as it passes `limit` (default
        `max_reply_bytes`), leaving the rest unread and the connection closed, so a gzip bomb stops at the cap."""
        limit = self.provider.max_reply_bytes if limit is None else limit
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

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
