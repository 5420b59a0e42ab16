"""Single flight: identical requests in flight at once are sent once; the others await that one's reply.

Keyed by the cache key. A follower gets the leader's reply or its error; when the leader is cancelled (its row
dropped, say), a follower asks again itself rather than inheriting a cancellation that was not its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """One call per key at a time; `run` answers (result, shared) — shared is True for a follower."""

    def __init__(self) -> None:
        self._calls: dict[bytes, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: bytes, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        while (leader := self._calls.get(key)) is not None:
            try:
                return await asyncio.shield(leader), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not leader.cancelled() or (task is not None and task.cancelling()):
                    raise  # this follower's own cancellation
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            result = await call()
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit):
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" log when no follower waited
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._calls[key]
