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
    """One call per key at a time; `run` answers (result, shared) — shared is True for a follower.

    A leader costs a dict entry; the future its followers await is made only when the first follower comes, so
    the common case (nobody else asks the same at once) pays for no future.
    """

    def __init__(self) -> None:
        self._calls: dict[bytes, asyncio.Future[T] | None] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: bytes, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        while key in self._calls:
            leader = self._calls[key]
            if leader is None:
                leader = self._calls[key] = asyncio.get_running_loop().create_future()
            try:
                return await asyncio.shield(leader), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not leader.cancelled() or (task is not None and task.cancelling()):
                    raise  # this follower's own cancellation
        self._calls[key] = None
        try:
            result = await call()
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit):
            if (future := self._calls[key]) is not None:
                future.cancel()
            raise
        except BaseException as exc:
            if (future := self._calls[key]) is not None:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" log when every follower was cancelled
            raise
        else:
            if (future := self._calls[key]) is not None:
                future.set_result(result)
            return result, False
        finally:
            del self._calls[key]
