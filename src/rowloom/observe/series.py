"""Series of a run's timeline in bounded memory: amounts spread over time bins, and step series.

`Bins` keep at most `MAX_BINS` bins and double their width as the run grows; a `Series` keeps its exact steps
while they are at most `MAX_STEPS`, and time-weighted bin means always. Both are fed in time order, one point at
a time, so their memory does not grow with the number of events. Owns no I/O and knows nothing of events.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque

MAX_BINS = 512
MAX_STEPS = 1_500  # beyond this many steps a series is read from its bins: at report widths steps paint a block
FIRST_WIDTH_S = 0.001  # every bin width is this times a power of two, so any two sets of bins can be merged


def width_for(end: float) -> float:
    """The bin width at which `MAX_BINS` bins cover [0, end]."""
    width = FIRST_WIDTH_S
    while end >= MAX_BINS * width:
        width *= 2
    return width


class Bins:
    """An amount spread over time (slot-seconds, say) in bins from t=0 whose width doubles when time outgrows
    `MAX_BINS` of them."""

    __slots__ = ("end", "values", "width")

    def __init__(self) -> None:
        self.width = FIRST_WIDTH_S
        self.values = array("d")
        self.end = 0.0  # the latest time an amount was added up to: the last bin is filled only that far

    def add(self, start: float, end: float, rate: float) -> None:
        """Spread `rate` per second over [start, end)."""
        if end <= start or rate == 0:
            return
        if end > self.end:
            self.end = end
        while end >= MAX_BINS * self.width:
            self._double()
        width, values = self.width, self.values
        i = int(start / width)
        if end < (i + 1) * width and i < len(values):  # within one bin already there: most intervals are short
            values[i] += rate * (end - start)
            return
        last = min(MAX_BINS - 1, int(end / width))
        if len(values) <= last:
            values.extend([0.0] * (last + 1 - len(values)))
        i = min(last, int(start / width))
        while start < end and i <= last:
            hi = end if i == last else min(end, (i + 1) * width)
            if hi > start:
                values[i] += rate * (hi - start)
                start = hi
            i += 1

    def _double(self) -> None:
        v = self.values
        self.values = array("d", (v[i] + (v[i + 1] if i + 1 < len(v) else 0.0) for i in range(0, len(v), 2)))
        self.width *= 2

    def at_width(self, width: float, count: int) -> list[float]:
        """The amounts in `count` bins of `width` (this width or a power-of-two multiple of it)."""
        values, own = list(self.values), self.width
        while own < width:
            values = [values[i] + (values[i + 1] if i + 1 < len(values) else 0.0) for i in range(0, len(values), 2)]
            own *= 2
        return (values + [0.0] * count)[:count]

    def integral(self, start: float, end: float) -> float:
        """The amount within [start, end), taking each bin's amount as spread evenly over the part of it filled."""
        if end <= start:
            return 0.0
        width, total = self.width, 0.0
        for i in range(max(0, int(start / width)), min(len(self.values), int(end / width) + 1)):
            filled = min((i + 1) * width, self.end) - i * width
            lo, hi = max(start, i * width), min(end, i * width + filled)
            if hi > lo and filled > 0:
                total += self.values[i] * (hi - lo) / filled
        return total


class Series:
    """A piecewise-constant series: value `v[i]` holds from `t[i]` until `t[i+1]` (seconds from job start).

    Set in time order. `t`/`v` are its exact steps while `exact` (at most `MAX_STEPS`); past that they are
    poured into bins and dropped, and reads come from time-weighted bin means. `last`, `peak` and `recent` (the
    last `recent_steps` steps) stay exact either way. `close(end)` extends the last value to the end of the run.
    """

    def __init__(self, recent_steps: int = 0) -> None:
        self.t: list[float] = []
        self.v: list[float] = []
        self.exact = True
        self.bins = Bins()
        self.recent: deque[tuple[float, float]] = deque(maxlen=recent_steps)
        self._since: float | None = None  # when the current value started
        self._value = 0.0
        self._peak = 0.0

    @property
    def empty(self) -> bool:
        """No point was set yet."""
        return self._since is None

    @property
    def last(self) -> float:
        """The current (last) value; 0 before the first point."""
        return self._value

    @property
    def peak(self) -> float:
        """The highest value the series held."""
        return max(self._peak, self._value)

    def set(self, t: float, value: float) -> None:
        """Record that the value is `value` from `t` on (same-time updates keep the last)."""
        since = self._since
        if since is None:
            self._since = t
        elif value == self._value:  # no change: most sets of a gauge repeat it
            return
        elif t > since:
            if not self.exact:
                self.bins.add(since, t, self._value)
            self._peak = max(self._peak, self._value)
            self._since = t
        self._value = value
        if self.recent.maxlen:
            _put_step(self.recent, t, value)
        if self.exact:
            self._step(t, value)

    def _step(self, t: float, value: float) -> None:
        if self.t and self.t[-1] == t:
            self.v[-1] = value
            if len(self.v) > 1 and self.v[-2] == value:
                self.t.pop()
                self.v.pop()
        elif not self.v or self.v[-1] != value:
            self.t.append(t)
            self.v.append(value)
            if len(self.t) > MAX_STEPS:
                self._coarsen()

    def _coarsen(self) -> None:
        """Pour the steps into the bins (the last, still holding, is added when it ends) and drop them."""
        for i in range(len(self.t) - 1):
            self.bins.add(self.t[i], self.t[i + 1], self.v[i])
        self.exact = False
        self.t, self.v = [], []

    def close(self, end: float) -> None:
        """The last value holds until `end` (the end of the run): count it in the bins."""
        if self._since is not None and end > self._since:
            if not self.exact:
                self.bins.add(self._since, end, self._value)
            self._peak = max(self._peak, self._value)
            self._since = end

    def at(self, t: float) -> float:
        """The value at time `t` (0 before the first point; the bin mean around `t` once not `exact`)."""
        if not self.exact:
            width = self.bins.width
            return self.bins.integral(math.floor(t / width) * width, (math.floor(t / width) + 1) * width) / width
        i = bisect.bisect_right(self.t, t) - 1
        return self.v[i] if i >= 0 else 0.0

    def integral(self, start: float, end: float) -> float:
        """The area under the series between `start` and `end` (from the bins once not `exact`)."""
        if end <= start:
            return 0.0
        if not self.exact:
            return self.bins.integral(start, end)
        if not self.t:
            return 0.0
        total = 0.0
        i = max(0, bisect.bisect_right(self.t, start) - 1)
        while i < len(self.t) and self.t[i] < end:
            lo = max(start, self.t[i])
            hi = min(end, self.t[i + 1] if i + 1 < len(self.t) else end)
            if hi > lo:
                total += self.v[i] * (hi - lo)
            i += 1
        return total

    def mean(self, start: float, end: float) -> float:
        """The time-weighted mean between `start` and `end`."""
        return self.integral(start, end) / (end - start) if end > start else 0.0

    def resample(self, start: float, end: float, bins: int) -> tuple[list[float], list[float]]:
        """Time-weighted means over `bins` equal bins: (bin centres, means)."""
        if end <= start or bins <= 0:
            return [], []
        width = (end - start) / bins
        edges = [start + i * width for i in range(bins + 1)]
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(bins)]
        return centres, [self.mean(edges[i], edges[i + 1]) for i in range(bins)]

    def steps(self, end: float) -> tuple[list[float], list[float]]:
        """Points for a step plot (`line_shape='hv'`), closed at `end` (only while `exact`)."""
        if not self.t:
            return [], []
        return [*self.t, end], [*self.v, self.v[-1]]


def _put_step(steps: deque[tuple[float, float]], t: float, value: float) -> None:
    """`Series.set`'s rule on a bounded list of (t, value) steps."""
    if steps and steps[-1][0] == t:
        steps[-1] = (t, value)
        if len(steps) > 1 and steps[-2][1] == value:
            steps.pop()
    elif not steps or steps[-1][1] != value:
        steps.append((t, value))
