"""`GradientLimit`: latency-based concurrency limit for servers that saturate without ever sending 429.

Owns the no-load round-trip estimate, its periodic re-probe and the latency windows; must not see leases.
"""

from __future__ import annotations

import statistics

from rowloom.models.admission.limits.base import clamp, next_epoch
from rowloom.models.types import Outcome
from rowloom.observe.clock import Clock


class GradientLimit:
    """Compares each window's median round trip with the observed no-load round trip.

    The no-load round trip is the smallest window median seen (not the smallest single sample, which
    latency jitter alone would push below any loaded median and turn into spurious cuts).

    * Shrink when the median exceeds `tolerance` × no-load: to the window's average in-flight count (at
      admission, which is what set each request's latency) times `tolerance × no_load / median`, never below
      `max_decrease` of it — queueing is adding latency, not throughput. Samples admitted before the last
      shrink (older epoch) describe the old concurrency and are left out, so one congestion event cuts once.
    * Grow by one per window while the median stays within tolerance and the limit is fully used; before the
      first shrink, double instead (slow start) when started below the ceiling.
    * Re-probe: every `probe_interval_s` the limit drops to `probe_fraction` of what is in flight until a
      window of requests admitted after the drop has finished; their median round trip becomes the new
      no-load estimate, so a baseline that drifted (longer prompts, a moved server) is re-learnt.

    Overload samples (429/503/timeouts) carry no latency information and are ignored: that is AIMD's job.
    Started at its ceiling (`initial=None`), it is a pure latency cap, which is how the composite uses it.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        initial: int | None = None,
        min_limit: int = 1,
        max_limit: int = 64,
        tolerance: float = 1.3,
        min_window: int = 8,
        max_decrease: float = 0.5,
        probe_interval_s: float = 60.0,
        probe_fraction: float = 0.5,
    ):
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if tolerance <= 1:
            raise ValueError("tolerance must exceed 1")
        self._clock = clock
        self._min, self._max = min_limit, max_limit
        self._value = clamp(max_limit if initial is None else initial, min_limit, max_limit)
        self._slow_start = self._value < max_limit
        self._tolerance, self._min_window, self._floor = tolerance, min_window, max_decrease
        self._probe_interval, self._probe_fraction = probe_interval_s, probe_fraction
        self._epoch = 0
        self._reason = "initial"
        self.no_load_rtt: float | None = None
        self._rtts: list[float] = []
        self._in_flight_sum = 0
        self._in_flight_max = 0
        self._window_size = min_window
        self._next_probe_at = clock.now() + probe_interval_s
        self._probe_started: float | None = None
        self._probe_limit = 0
        self._probe_rtts: list[float] = []

    @property
    def limit(self) -> int:
        value = int(self._value)
        return min(value, self._probe_limit) if self._probe_started is not None else value

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
    ) -> None:
        if dropped or rtt <= 0 or (epoch is not None and epoch < self._epoch):
            return
        if self._probe_started is not None:
            self._probe_sample(start, rtt)
            return
        if self.no_load_rtt is not None and self._clock.now() >= self._next_probe_at:
            self._start_probe(in_flight)
            return
        if not self._rtts:
            self._window_size = max(self._min_window, min(self.limit, in_flight))
        self._rtts.append(rtt)
        self._in_flight_sum += in_flight if in_flight_at_start is None else in_flight_at_start
        self._in_flight_max = max(self._in_flight_max, in_flight)
        if len(self._rtts) >= self._window_size:
            self._end_window()

    def _end_window(self) -> None:
        median = statistics.median(self._rtts)
        if self.no_load_rtt is None or median < self.no_load_rtt:
            self.no_load_rtt = median
        average_in_flight = self._in_flight_sum / len(self._rtts)
        fully_used = self._in_flight_max >= self.limit
        self._rtts.clear()
        self._in_flight_sum = self._in_flight_max = 0
        ratio = self._tolerance * self.no_load_rtt / median
        if ratio < 1:
            target = average_in_flight * max(ratio, self._floor)
            new = clamp(int(target), self._min, self._max)
            if new < self._value:
                self._value = new
                self._epoch = next_epoch()
                self._slow_start = False
                self._reason = f"latency {median / self.no_load_rtt:.2f}x the no-load round trip"
        elif fully_used and self._value < self._max:
            step = self._value if self._slow_start else 1.0
            self._value = clamp(self._value + step, self._min, self._max)
            self._reason = "latency near no-load: growing"

    def _start_probe(self, in_flight: int) -> None:
        self._probe_started = self._clock.now()
        self._probe_limit = max(self._min, int(min(self._value, in_flight) * self._probe_fraction))
        self._probe_rtts = []
        self._reason = "re-probing the no-load round trip"

    def _probe_sample(self, start: float, rtt: float) -> None:
        assert self._probe_started is not None
        if start < self._probe_started:
            return  # admitted at full concurrency: says nothing about no-load latency
        self._probe_rtts.append(rtt)
        if len(self._probe_rtts) >= max(1, min(self._min_window, self._probe_limit)):
            self.no_load_rtt = statistics.median(self._probe_rtts)
            self._probe_started = None
            self._next_probe_at = self._clock.now() + self._probe_interval
            self._rtts.clear()
            self._in_flight_sum = self._in_flight_max = 0
            self._reason = "no-load round trip re-probed"

    def restart(self, value: int) -> None:
        """After an outage: keep the no-load round trip learnt, but do not cap the limit below `value`."""
        floor = clamp(value, self._min, self._max)
        self._value = max(self._value, floor)
        self._probe_limit = max(self._probe_limit, int(floor))
