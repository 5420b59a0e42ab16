"""Crossing threads: how synchronous callers on other threads reach the event loop that owns admission.

Owns the loop binding and the lease hand-over that survives Ctrl-C; makes no admission decisions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LoopBinding:
    """The event loop (and its thread) that an admission controller belongs to."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self) -> asyncio.AbstractEventLoop:
        """Bind to the loop running on this thread (called by every async entry point)."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self._thread = loop, threading.get_ident()
        return loop

    def serving(self) -> bool:
        """Whether the bound loop is running (on any thread)."""
        return self.loop is not None and self.loop.is_running()

    def foreign(self) -> bool:
        """Whether this thread is not the bound loop's thread while that loop runs."""
        return self._thread != threading.get_ident() and self.serving()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the bound loop and wait for its result (from a foreign thread)."""

        async def on_loop() -> T:
            return fn(*args, **kwargs)

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result()

    def wait(self, acquire: Callable[[], Awaitable[T]], give_back: Callable[[T], object]) -> T:
        """Run `acquire()` on the bound loop and block this thread for its result.

        The result is handed over under a lock, so that if this thread is interrupted (Ctrl-C) just as it
        arrives, exactly one side gives it back with `give_back`.
        """
        handoff = threading.Lock()
        held: list[T] = []
        abandoned = False

        async def on_loop() -> T:
            result = await acquire()
            with handoff:
                if not abandoned:
                    held.append(result)
                    return result
            give_back(result)
            return result

        assert self.loop is not None
        pending = asyncio.run_coroutine_threadsafe(on_loop(), self.loop)
        try:
            return pending.result()
        except BaseException:
            with handoff:
                abandoned = True
            pending.cancel()
            if held:
                give_back(held[0])
            raise
