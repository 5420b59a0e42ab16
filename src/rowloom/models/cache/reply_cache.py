"""`ReplyCache`: the request path's cache between the executor and admission — key, look up, single flight, store.

A hit is answered here and costs nothing further (no lease, no budget, no retry); a miss goes on to the
executor's attempt loop, shared with identical requests already in flight: the executor `claim`s the key, sends,
and `settle`s it (the common case, with no coroutine of the cache's between the request path and the request), or
`follow`s the identical request in flight. Emits nothing: the executor does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from rowloom.config.cache import CacheConfig
from rowloom.models.cache.flight import SingleFlight
from rowloom.models.cache.keys import request_key
from rowloom.models.cache.settings import resolve
from rowloom.models.cache.store import CacheUnavailable, ReplyStore
from rowloom.models.types import ChatRequest, ChatResponse
from rowloom.observe.context import current


class ReplyCache:
    """Keys requests as `run.cache` says, answers from the store when reading, stores replies when writing."""

    def __init__(self, store: ReplyStore, config: CacheConfig):
        """`config` resolved (`settings.resolve`): its mode is set and not off."""
        self.store = store
        self.config = config
        self.reads = config.mode in ("readwrite", "read")
        self.writes = config.mode in ("readwrite", "write")
        self._flight: SingleFlight[ChatResponse] = SingleFlight()

    def key(self, request: ChatRequest, provider: str) -> bytes:
        """The request's key; its sample is the engine's task (one reply per row) unless `share_identical`."""
        config = self.config
        return request_key(
            request,
            namespace=config.namespace,
            provider=provider if config.scope_by_provider else None,
            sample=None if config.share_identical else current().task,
        )

    def get(self, key: bytes) -> ChatResponse | None:
        """The stored reply, when the cache is read and holds a sound one."""
        return self.store.get(key) if self.reads else None

    def claim(self, key: bytes) -> bool:
        """True when this request is to be sent now, and the caller must `settle` it: no identical one is in
        flight (or the cache is not read, and every request is sent). False: `follow` the one in flight."""
        return self._flight.claim(key) if self.reads else True

    def settle(self, key: bytes, reply: ChatResponse | None = None, error: BaseException | None = None) -> None:
        """End a claimed request: its reply is stored and handed to its followers, or its error handed to them."""
        if self.reads:
            self._flight.settle(key, reply, error)
        if error is None and self.writes:
            self.store.put(key, reply)  # type: ignore[arg-type]

    async def follow(
        self, key: bytes, send: Callable[[], Awaitable[ChatResponse]], on_send: Callable[[], None]
    ) -> tuple[ChatResponse, bool]:
        """(reply, shared) for a request `claim` refused: the identical request's reply (shared), or — when that
        one is dropped before it is answered — this one's own, sent (`on_send`) and stored."""

        async def lead() -> ChatResponse:
            on_send()
            return await send()

        reply, shared = await self._flight.run(key, lead)
        if self.writes and not shared:
            self.store.put(key, reply)
        return reply, shared

    def close(self) -> None:
        """Commit the replies still queued (blocks: call it off the event loop)."""
        self.store.close()


def open_cache(config: CacheConfig) -> ReplyCache | None:
    """The run's cache (None when `off`); raises `CacheUnavailable` saying why one asked for cannot be used."""
    settings = resolve(config)
    if settings.mode == "off":
        return None
    assert settings.path is not None
    folder = Path(settings.path).expanduser()
    try:
        store = ReplyStore(folder, max_bytes=int(settings.max_size_mb * 2**20), writable=settings.mode != "read")
    except CacheUnavailable as exc:
        raise CacheUnavailable(
            f"the reply cache folder {folder} cannot be used ({exc}); this run goes on without the cache "
            f"(give a writable folder with --cache PATH or run.cache.path, or turn it off with --no-cache)"
        ) from None
    return ReplyCache(store, settings)
