"""Processor sharing for the vLLM-style simulator: n requests share capacity c, each at rate min(1, c/n).

Event-driven: one timer for the next completion, recomputed on every arrival, departure and capacity change.
Owns only service progress; admission, stats and HTTP belong to the server.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

# Timers may fire up to the loop's clock resolution early; finishing work within this margin avoids a
# needless extra wake-up for a job that is done in all but rounding.
_EPSILON_WORK_S = 1e-6


class ProcessorSharing:
    """Serve jobs of known no-load duration so that all jobs in service progress at one common rate.

    Because every job progresses at the same rate, one "virtual work" counter (seconds of no-load service
    each job has received since creation) replaces per-job bookkeeping: a job arriving at virtual time V with
    work w finishes when the counter reaches V + w. A heap of finish points gives O(log n) per event.
    """

    def __init__(self, capacity: Callable[[], int]):
        self._capacity = capacity
        self._virtual = 0.0
        self._stamp: float | None = None
        self._rate = 0.0
        self._active = 0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> int:
        """Jobs currently in service."""
        return self._active

    @property
    def rate(self) -> float:
        """Current progress rate of each job, in no-load seconds per second."""
        return self._rate

    async def serve(self, work_s: float) -> None:
        """Return once `work_s` seconds of no-load service were received; cancellation leaves the pool."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (self._virtual + work_s, next(self._seq), future))
        self._active += 1
        self._recompute(loop)
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                # The client went away (handler cancelled): stop sharing capacity with it. Its heap entry
                # stays behind, marked by the cancelled future, and is dropped when it reaches the top.
                future.cancel()
                self._advance(loop.time())
                self._active -= 1
                self._recompute(loop)

    def capacity_changed(self) -> None:
        """Re-time completions after the capacity schedule stepped (called from a loop timer)."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        self._recompute(loop)

    def _advance(self, now: float) -> None:
        # The rate was constant since the last event, so progress is linear in the elapsed time.
        if self._stamp is not None and now > self._stamp:
            self._virtual += (now - self._stamp) * self._rate
        self._stamp = now

    def _recompute(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._heap and self._heap[0][2].cancelled():
            heapq.heappop(self._heap)
        capacity = self._capacity()
        self._rate = min(1.0, capacity / self._active) if self._active else 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap and self._rate > 0:
            delay = max(0.0, (self._heap[0][0] - self._virtual) / self._rate)
            self._timer = loop.call_at(loop.time() + delay, self._complete_due, loop)

    def _complete_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._advance(loop.time())
        while self._heap and self._heap[0][0] <= self._virtual + _EPSILON_WORK_S:
            _, _, future = heapq.heappop(self._heap)
            if not future.cancelled():
                self._active -= 1
                future.set_result(None)
        self._recompute(loop)
