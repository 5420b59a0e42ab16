"""`LatencyLimit`: a concurrency limit for servers that slow down under load instead of sending 429.

Owns the decisions taken from a model of the server (`LoadCurve`: how round trips grow with the load they were
served under) and its probes; must not see leases, queues or wall time beyond the injected clock. Design notes
and the measurements behind them: docs/request-admission.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rowloom.concurrency.clock import Clock
from rowloom.models.admission.limits.base import clamp, next_epoch
from rowloom.models.admission.limits.load_curve import LoadCurve, Window
from rowloom.models.types import Outcome

_DEEP = 0.5  # a probe for a knee below every load seen holds the limit at half the lowest
_ROUTINE = 0.7  # a routine probe below the operating load holds it at this share (cheaper, shallower)
_SLOW_START = 1.5  # growth per window before the first cut
_AHEAD = 1.5  # the limit stays within this factor of the highest load measured
_AGAIN_WITHIN = 6  # a probe within this many windows of the last goes only as deep as a routine one
_PROBE_ROUND_TRIPS = 30  # a probe ends after this many (smoothed) round trips even without its samples


@dataclass(slots=True)
class _Probe:
    """A temporary lower limit held until the curve has enough samples at or below `level`."""

    started: float
    limit: int
    level: float
    deadline: float  # a probe that cannot gather its samples (demand fell, requests hang) ends anyway
    samples: int = 0


class LatencyLimit:
    """Settles just past the load where more concurrency stops buying throughput (the server's knee).

    Every success is one point of the server's latency-versus-load curve: its round trip, normalised for the
    reply's length, against the mean number of requests in flight while it ran. Spread that does not depend on
    load (replies of different lengths, a noisy network) lands at every load alike and makes no knee; queueing
    makes latency grow in proportion to load. Once per window of samples (sized from the measured spread):

    * **Cut** to `knee × tolerance` (at least knee + 1) when the limit is above it, or, when latency grows in
      proportion to load at every level seen (the knee lies below them all), to the headroom of where latency
      stops being flat: the lowest level, or a little above it when that level's latency sits above the
      proportional line through the others (a probe that landed just under the knee).
    * **Grow** while the limit is fully used and below that headroom: by half per window in slow start (before
      any cut), by one without a known knee, halfway to the headroom with one.
    * **Never run ahead of the curve**: at most 1.5x the highest load measured (and `start` before anything
      is), so a server that never says it is full is measured on the way up, not after a blind overshoot.
    * **Probe** — hold the limit at 0.7x the load until a window of samples came back from there — when the
      curve has nothing below the operating load and the load is steady, at most every `probe_interval_s`
      (doubling up to 8x while probes find no knee) and never while the endpoint answers 429/503/529 itself
      (it says when it is full); pinned at the ceiling with one level seen; or, deeper (0.5x), when the knee
      lies below every level seen and nothing places it — at once, but only 0.7x deep within a few windows of
      the last probe (that one found the region; halving again would cost a second of throughput to learn
      only latency).

    Overload samples (429/503/timeouts) carry no latency information and are not points: that is AIMD's job.
    With `initial=None` it starts at its ceiling and acts as a cap on another limit (how the composite uses it).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        initial: int | None = None,
        start: int = 16,
        min_limit: int = 1,
        max_limit: int = 64,
        tolerance: float = 1.25,
        probe_interval_s: float = 30.0,
        min_window: int = 4,
    ):
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if tolerance <= 1:
            raise ValueError("tolerance must exceed 1")
        self._clock = clock
        self._min, self._max = min_limit, max_limit
        self._value = clamp(max_limit if initial is None else initial, min_limit, max_limit)
        self._slow_start = self._value < max_limit
        # Never more than half again the highest load measured (nor below `start` before anything is): growth
        # cannot outrun the curve, so a knee is seen on the way up instead of after a blind overshoot.
        self._start = int(clamp(start, min_limit, max_limit))
        self._measured_cap = self._start
        self._log_tolerance = math.log(tolerance)
        self._tolerance = tolerance
        self._probe_interval = self._interval = probe_interval_s
        self._min_window = min_window
        self._epoch = 0
        self._reason = "initial"
        self.curve = LoadCurve(memory_s=2 * probe_interval_s)
        self._size = self._window_size()  # samples per decision, re-read from the measured spread at each one
        self._window = Window()
        self._probe: _Probe | None = None
        self._last_probe = -math.inf
        self._windows_since_probe = 2
        self._rtt = 0.0  # smoothed round trip, to bound a probe's length
        self._signalled_at = -math.inf  # when the endpoint last answered 429/503/529 itself
        self._previous_load = 0.0
        self.probes = 0

    # ------------------------------------------------------------ the Limit protocol

    @property
    def limit(self) -> int:
        value = min(int(self._value), self._measured_cap)
        return min(value, self._probe.limit) if self._probe is not None else value

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
        if dropped:
            if cause in (Outcome.RATE_LIMITED, Outcome.OVERLOADED):
                self._signalled_at = self._clock.now()
            return
        if rtt <= 0:
            return
        if load is None:  # no integral of the in-flight count: the mean of both ends approximates it
            load = in_flight if in_flight_at_start is None else (in_flight + in_flight_at_start) / 2.0
        self.curve.add(self._clock.now(), load, rtt, tokens)
        self._rtt = rtt if self._rtt == 0.0 else 0.9 * self._rtt + 0.1 * rtt
        if self._probe is not None:
            self._continue_probe(start, load)
            return
        if epoch is not None and epoch < self._epoch:
            return  # admitted before the last cut: its load is on the curve, but the decision waits for new ones
        self._window.add(load, rtt, tokens, full=in_flight >= self.limit)
        if len(self._window) >= self._size:
            self._decide()

    def restart(self, value: int) -> None:
        """The endpoint came back after an outage: what was learnt about latency still holds; never cap below
        `value` because of a probe or cut from before."""
        self._probe = None
        self._value = max(self._value, clamp(value, self._min, self._max))
        self._window.clear()

    # ------------------------------------------------------------ decisions

    def _window_size(self) -> int:
        """Samples for one decision: enough that the mean's standard error is half the tolerance."""
        return self._window_size_for(self.curve.spread())

    def _window_size_for(self, spread: float) -> int:
        needed = math.ceil((2.0 * spread / self._log_tolerance) ** 2)
        return int(clamp(needed, self._min_window, 256))

    def _decide(self) -> None:
        window, self._window = self._window, Window()
        self._windows_since_probe += 1
        load = window.mean_load
        self._size = self._window_size()  # re-read the spread once per decision, not per sample
        min_weight = self._size / 2
        measured = self.curve.highest_load(min_weight=min_weight)
        self._measured_cap = max(self._start, math.floor(_AHEAD * measured))
        knee = self.curve.knee(min_weight=min_weight)
        rising, self._previous_load = load > 1.1 * self._previous_load, load  # growth is still exploring
        if knee is None:
            # One level seen. Growth will show a second one; pinned at the ceiling, only a probe can.
            if load >= 0.9 * self._max and self._may_probe():
                self._start_probe(load, _ROUTINE, "one load level seen at the ceiling: probing a lower one")
            else:
                self._grow(window, None)
            return
        if knee.past:
            # Every load seen is past the knee: hold just above where latency stops being flat (the lowest load,
            # or a little above it when the lowest point sits above the proportional line). Look lower at once
            # only when nothing says where below the lowest load the knee is; a second look in a row goes less
            # deep (the first one found the region).
            self._interval = self._probe_interval
            flat = max(knee.lowest, self.curve.flat_until(min_weight=min_weight))
            self._cut(self._headroom(flat), "latency grows in proportion to load at every level seen")
            needed = flat < knee.lowest * math.sqrt(self._tolerance)
            if knee.lowest > self._min and self._may_probe(needed=needed):
                depth = _ROUTINE if self._windows_since_probe < _AGAIN_WITHIN else _DEEP
                self._start_probe(knee.lowest, depth, "the knee lies below every load seen: probing lower")
            return
        if knee.load is not None:
            self._interval = self._probe_interval
        if knee.lowest > load / 1.3 and not rising and self._may_probe():
            self._start_probe(load, _ROUTINE, "re-probing below the operating load")
            return
        if knee.load is not None:
            target = self._headroom(knee.load)
            if self.limit > target:
                self._cut(target, f"past the knee at load {knee.load:.1f}")
                return
        self._grow(window, knee.load)

    def _grow(self, window: Window, knee: float | None) -> None:
        """More concurrency while the limit is used: by half per window in slow start, else by one; with a
        known knee, halfway to its headroom per window and never past it."""
        if not window.fully_used or self._value >= self._max:
            return
        grown = self._value + (self._value * (_SLOW_START - 1) if self._slow_start else 1.0)
        if knee is not None:
            target = math.floor(self._headroom(knee))
            grown = min(target, self._value + max(1.0, (target - self._value) / 2))
        if grown > self._value:
            self._value = clamp(grown, self._min, self._max)
            self._reason = "below the knee: growing" if knee is not None else "no queueing seen: growing"

    def _headroom(self, knee: float) -> float:
        """The limit for a server whose knee is at `knee`: a little above it, so no slot waits for a request."""
        return max(knee * self._tolerance, knee + 1.0)

    def _cut(self, target: float, reason: str) -> None:
        new = clamp(math.floor(target), self._min, self._max)
        self._slow_start = False
        if new < self._value:
            self._value = new
            self._epoch = next_epoch()
            self._reason = reason

    def _may_probe(self, *, needed: bool = False) -> bool:
        """A probe the model needs may follow the last after a few windows. A routine one waits for the
        interval and is skipped while the endpoint signals its own capacity (429/503/529 within the base
        interval): an endpoint that says when it is full does not need to be measured below it."""
        if needed:
            return self._windows_since_probe >= 2
        now = self._clock.now()
        return now - self._signalled_at >= self._probe_interval and now - self._last_probe >= self._interval

    def _start_probe(self, level: float, depth: float, reason: str) -> None:
        limit = int(clamp(math.floor(level * depth), self._min, self._max))
        if limit >= self.limit:
            return  # nothing lower to learn from
        now = self._clock.now()
        self._probe = _Probe(now, limit, level * depth * 1.1, now + _PROBE_ROUND_TRIPS * self._rtt)
        if self.probes:  # the next routine probe waits longer, until a knee resets the interval
            self._interval = min(8 * self._probe_interval, 2 * self._interval)
        self._last_probe = now
        self._windows_since_probe = 0
        self.probes += 1
        self._reason = reason

    def _continue_probe(self, start: float, load: float) -> None:
        probe = self._probe
        assert probe is not None
        if start >= probe.started and load <= probe.level:
            probe.samples += 1
        if probe.samples >= max(self._size, 2 * self._min_window) or self._clock.now() >= probe.deadline:
            self._probe = None
            self._window.clear()
            self._reason = "probe done"
