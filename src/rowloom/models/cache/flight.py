"""Single flight: identical requests in flight at once are sent once; the others await that one's reply.

Keyed by the cache key. A follower gets the leader's reply or its error; when the leader is cancelled (its row
dropped, say), a follower asks again itself rather than inheriting a cancellation that was not its own.

The leader's side is two plain calls, `claim` and `settle`, so the request path that leads (nearly every request)
awaits its own call directly, with no coroutine of the flight's between it and the request; `run` wraps both for
callers that follow, or that want one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_CANCELLATIONS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


class SingleFlight(Generic[T]):
    """One call per key at a time; `run` answers (result, shared) — shared is True for a follower.

    A leader costs a dict entry; the future its followers await is made only when the first follower comes, so
    the common case (nobody else asks the same at once) pays for no future.
    """

    def __init__(self) -> None:
        self._calls: dict[bytes, asyncio.Future[T] | None] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def claim(self, key: bytes) -> bool:
        """Lead `key` when no call does: True, and the caller must `settle` it; False when one leads already."""
        if key in self._calls:
            return False
        self._calls[key] = None
        return True

    def settle(self, key: bytes, result: T | None = None, error: BaseException | None = None) -> None:
        """End the claim on `key`: its followers get `result`, or `error` (a cancellation cancels them: they ask
        again themselves)."""
        future = self._calls.pop(key)
        if future is None:
            return
        if error is None:
            future.set_result(result)  # type: ignore[arg-type]
        elif isinstance(error, _CANCELLATIONS):
            future.cancel()
        else:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" log when every follower was cancelled

    async def run(self, key: bytes, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        while not self.claim(key):
            leader = self._calls[key]
            if leader is None:
                leader = self._calls[key] = asyncio.get_running_loop().create_future()
            try:
                return await asyncio.shield(leader), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not leader.cancelled() or (task is not None and task.cancelling()):
                    raise  # this follower's own cancellation
        try:
            result = await call()
        except BaseException as exc:
            self.settle(key, error=exc)
            raise
        self.settle(key, result)
        return result, False
