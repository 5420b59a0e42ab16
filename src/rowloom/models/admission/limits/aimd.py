"""`AIMDLimit`: loss-based concurrency limit — slow start, additive increase, multiplicative decrease.

Owns the limit value, its cut epochs and the memory of where overload began; must not see leases or time.
"""

from __future__ import annotations

from collections import deque

from rowloom.models.admission.limits.base import clamp, next_epoch
from rowloom.models.types import Outcome


class AIMDLimit:
    """Finds an endpoint's capacity from overload signals (429, 503, timeouts).

    * Slow start: every success at full use adds `slow_start_step` (1.0 doubles the limit per round trip,
      0.5 grows it by half) until the first overload.
    * Congestion avoidance: after a window of successes at full use, add `increase_step` — or only
      `probe_step` while within `probe_zone` (at least one request) of the level where overload last began, so
      steady state probes the known edge gently instead of hitting 429 every few windows. Nothing grows while
      the limit is not used (`in_flight` below it): unused headroom proves nothing.
    * Decrease: an overload cuts to `limit * decrease_factor`, but never below the concurrency that has been
      succeeding since the last cut (it is proven), and always by at least one. On the first overload (leaving
      slow start) the estimate is preferred over a blind cut: the requests that were already in flight when
      the first rejected one was admitted (`in_flight_at_start - 1`) — in slow start all of them were being
      served. Later, "succeeding" is measured by Little's law (successes admitted since the last cut that
      finished within the last round trip), not by the in-flight count at a success, which also counts
      doomed requests still in transit.
    * Cascade dampening: an overload from a request admitted before the last cut (older epoch) is part of
      the burst already answered and changes nothing.
    """

    def __init__(
        self,
        *,
        initial: int = 8,
        min_limit: int = 1,
        max_limit: int = 64,
        increase_step: float = 1.0,
        window: int | None = None,
        decrease_factor: float = 0.75,
        slow_start: bool = True,
        slow_start_step: float = 1.0,
        probe_zone: float = 0.1,
        probe_step: float = 0.2,
    ):
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be in (0, 1)")
        self._min, self._max = min_limit, max_limit
        self._value = clamp(initial, min_limit, max_limit)
        self._step, self._window, self._factor = increase_step, window, decrease_factor
        self._zone, self._probe_step = probe_zone, probe_step
        self._probe = probe_step  # current probe step; halves while the same edge keeps answering 429
        self._slow_start = slow_start
        self._slow_start_step = slow_start_step
        self._epoch = 0
        self._successes = 0  # fully-used successes in the current increase window
        self._finished: deque[float] = deque()  # finish times of recent successes admitted since the last cut
        self._rtt: float | None = None  # smoothed round trip of successes
        self._overload_at: float | None = None
        self._last_success: float | None = None
        self._cut_at = float("-inf")  # when the limit was last cut
        self._reason = "initial"
        self.dampened = 0  # overload signals ignored as part of an answered burst

    @property
    def limit(self) -> int:
        return int(self._value)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def min_limit(self) -> int:
        return self._min

    @property
    def max_limit(self) -> int:
        return self._max

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def in_slow_start(self) -> bool:
        return self._slow_start

    @property
    def overload_level(self) -> float | None:
        """The concurrency at which overload last began (None once growth has left it well behind)."""
        return self._overload_at

    def on_sample(
        self,
        start: float,
        rtt: float,
        in_flight: int,
        dropped: bool,
        *,
        epoch: int | None = None,
        in_flight_at_start: int | None = None,
        cause: Outcome | None = None,
        tokens: int | None = None,
        load: float | None = None,
    ) -> None:
        current_epoch = epoch is None or epoch >= self._epoch
        if dropped:
            if current_epoch:
                self._decrease(start + rtt, in_flight, in_flight_at_start)
            else:
                self.dampened += 1
            if self._serving_recently(start + rtt):
                self._hold_at_in_service(max(in_flight - 1, self.succeeding(start + rtt)))
            return
        self._record_success(start, start + rtt, rtt)
        if in_flight < self.limit:
            return
        if self._slow_start:
            self._grow(self._slow_start_step, "slow start")
            return
        self._successes += 1
        if self._successes < (self._window or self.limit):
            return
        self._successes = 0
        step, reason = self._step, "additive increase"
        if self._overload_at is not None:
            width = self._zone_width()
            if self._value > self._overload_at + width:
                self._overload_at = None  # capacity evidently grew past the old edge
            elif self._value >= self._overload_at - width:
                step, reason = self._probe, "probing near the last overload"
        self._grow(step, reason)

    def _zone_width(self) -> float:
        """How near the last overload level counts as its edge: `probe_zone` of it, and never less than one
        request — on a small endpoint 10% is less than one step of the limit, and the edge would go unseen."""
        assert self._overload_at is not None
        return max(1.0, self._overload_at * self._zone)

    def _serving_recently(self, now: float) -> bool:
        """Whether requests of ours succeeded within the last two round trips (the server serves some)."""
        return self._rtt is not None and self._last_success is not None and now - self._last_success <= 2 * self._rtt

    def _hold_at_in_service(self, floor: int) -> None:
        """Within a burst of rejections, hold the limit at what is still in flight.

        Rejections come back at once while served requests stay in flight, so after each one the remaining
        in-flight count approaches what the server is actually serving. Only while the server is evidently
        serving some of our requests (when it rejects everything, the one cut and a cooldown answer it), and
        never below the concurrency proven to succeed since the last cut. Holding the limit there (no new
        epoch: it is the same congestion event) stops new requests from joining the burst, which is what
        makes one burst cost one cut instead of a cascade of cuts and a cooldown.
        """
        target = max(self._min, floor)
        if target < self.limit:
            self._value = float(target)
            self._successes = 0  # a new increase window starts after the burst
            self._overload_at = float(target + 1) if self._overload_at is None else min(self._overload_at, target + 1)
            self._reason = "overload: held at the concurrency in service"

    def _grow(self, step: float, reason: str) -> None:
        before = self.limit
        self._value = clamp(self._value + step, self._min, self._max)
        if self.limit != before:
            self._reason = reason

    def _record_success(self, start: float, finish: float, rtt: float) -> None:
        self._rtt = rtt if self._rtt is None else 0.8 * self._rtt + 0.2 * rtt
        self._last_success = finish if self._last_success is None else max(self._last_success, finish)
        if start < self._cut_at:
            return  # admitted before the last cut: served under conditions that may be gone (a capacity drop)
        self._finished.append(finish)
        while self._finished and self._finished[0] < finish - 2 * self._rtt:
            self._finished.popleft()

    def succeeding(self, now: float) -> int:
        """Successes (admitted since the last cut) that finished within one round trip before `now`."""
        if self._rtt is None:
            return 0
        horizon = now - self._rtt
        return sum(1 for finish in self._finished if finish > horizon)

    def _decrease(self, now: float, in_flight: int, in_flight_at_start: int | None) -> None:
        current = self.limit
        if current <= self._min:
            # Nothing to cut, and nothing learnt about the edge above the floor: marking it here would leave the
            # limit probing up from the floor at a sixteenth of a step, where one lost request keeps it for good.
            return
        blind = self._value * self._factor
        edge = min(current, in_flight if in_flight_at_start is None else in_flight_at_start)
        succeeding = self.succeeding(now)
        if self._slow_start and in_flight_at_start is not None and in_flight_at_start > 1:
            succeeding = in_flight_at_start - 1
        if self._slow_start and succeeding:
            target, reason = float(succeeding), "first overload: concurrency that was succeeding"
            edge = min(edge, succeeding + 1)
        elif succeeding > blind:
            target, reason = float(succeeding), "overload: back to the concurrency that was succeeding"
        else:
            target, reason = blind, "overload: multiplicative decrease"
        same_edge = self._overload_at is not None and abs(edge - self._overload_at) <= self._zone_width()
        # Repeated overload at the same edge: probe it half as eagerly next time (fewer 429s in steady state).
        self._probe = max(self._probe_step / 16, self._probe / 2) if same_edge else self._probe_step
        self._overload_at = float(max(1, edge))
        self._slow_start = False
        self._successes = 0
        new = clamp(min(current - 1, int(target)), self._min, self._max)
        self._value = new
        self._epoch = next_epoch()
        self._cut_at = now
        self._finished.clear()
        self._reason = reason

    def restart(self, value: int) -> None:
        """Back in slow start at `value` after an outage: the server may have come back with another capacity."""
        self._value = clamp(value, self._min, self._max)
        self._slow_start = True
        self._successes = 0
        self._overload_at = None
        self._probe = self._probe_step
        self._epoch = next_epoch()  # overloads of requests sent before the outage belong to it: not a new cut
        self._finished.clear()
        self._reason = "restart after an outage"
