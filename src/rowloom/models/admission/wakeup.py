"""`Wakeup`: one pending timer on the injected clock that fires a callback when its deadline passes.

Owns only the timer task (no polling: one clock sleep per deadline); knows nothing of what it wakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rowloom.models.admission.threads import running_loop
from rowloom.observe.clock import Clock


class Wakeup:
    """Calls `fire()` once `deadline()` has passed; the deadline may move later while it waits.

    Arming while a timer is pending is a no-op (the pending one re-reads the deadline). Without a running
    event loop nothing can be waiting, so nothing is armed.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def arm(self, deadline: Callable[[], float | None], fire: Callable[[], None]) -> None:
        loop = running_loop()
        if loop is None or self.pending:
            return
        self._task = loop.create_task(self._run(deadline, fire))

    @property
    def pending(self) -> bool:
        return self._task is not None and not self._task.done()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None

    async def _run(self, deadline: Callable[[], float | None], fire: Callable[[], None]) -> None:
        while (until := deadline()) is not None and (delay := until - self._clock.now()) > 0:
            await self._clock.sleep(delay)
        self._task = None  # before firing, so that `fire` may arm the next one
        fire()
