"""`Wakeup`: one pending timer on the injected clock that fires a callback when its deadline passes.

Owns only the timer task (no polling: one clock sleep per deadline); knows nothing of what it wakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rowloom.concurrency.clock import Clock
from rowloom.concurrency.loops import running_loop

_NOW = float("-inf")  # a deadline of None: nothing to wait for, fire at once


class Wakeup:
    """Calls `fire()` once `deadline()` has passed, at the earliest deadline armed; a deadline may move later.

    Arming while a timer is pending keeps that timer when it wakes no later than the new deadline (it re-reads
    its own deadline then, so one that moved later is followed). An earlier deadline replaces it: the new
    `deadline` and `fire` take over, and the replaced callback is not called (callers arm the same callback
    on one `Wakeup`, and it re-arms for whatever still waits). Without a running event loop nothing can be
    waiting, so nothing is armed.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wakes_at = _NOW  # when the pending timer next looks at its deadline

    def arm(self, deadline: Callable[[], float | None], fire: Callable[[], None]) -> None:
        """Fire `fire()` once `deadline()` has passed, or sooner if a pending timer is due sooner."""
        loop = running_loop()
        if loop is None:
            return
        until = deadline()
        wakes_at = _NOW if until is None else until
        pending = self._task
        if pending is not None and not pending.done():
            if self._wakes_at <= wakes_at:
                return
            pending.cancel()  # asleep until later than this deadline: it would fire late
        self._wakes_at = wakes_at
        self._task = loop.create_task(self._run(deadline, fire))

    @property
    def pending(self) -> bool:
        """Whether a timer is armed and has not fired yet."""
        return self._task is not None and not self._task.done()

    def cancel(self) -> None:
        """Stop the pending timer, if any, without firing it."""
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._wakes_at = _NOW

    async def _run(self, deadline: Callable[[], float | None], fire: Callable[[], None]) -> None:
        while (until := deadline()) is not None and (delay := until - self._clock.now()) > 0:
            self._wakes_at = until
            await self._clock.sleep(delay)
        self._task = None  # before firing, so that `fire` may arm the next one
        self._wakes_at = _NOW
        fire()
