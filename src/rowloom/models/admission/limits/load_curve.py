"""`LoadCurve`: what a server's round trips look like at each load, learnt from finished requests.

Owns the per-load statistics (exponentially forgotten), the reply-length normalisation and the noise estimate;
must not decide limits (that is `LatencyLimit`'s job). All statistics are of the log round trip, where the
multiplicative spread of real latencies becomes additive and a mean is a median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_BUCKET = math.log(1.1)  # load levels ~10% apart
_SYSTEMATIC = 0.07  # the least uncertainty of a point's mean log round trip, however many samples it holds
_MIN_RANGE = 1.3  # a slope needs loads at least this far apart
_POOL_SPAN = 1.25  # sparse neighbouring levels pool into one point across at most this load ratio
_PRIOR_SPREAD = 0.5  # assumed log-spread until the curve has measured one
_MIN_SPREAD = 0.05
_KNEE_GRID = 40  # steps of the knee's search between the lowest and highest load (flat_until)


@dataclass(slots=True)
class _Level:
    """Forgetting sums at one load level: weight, load, log rtt (r), log tokens (k) and their products."""

    stamp: float
    w: float = 0.0
    load: float = 0.0
    r: float = 0.0
    k: float = 0.0
    rr: float = 0.0
    rk: float = 0.0
    kk: float = 0.0

    def age_to(self, now: float, memory_s: float) -> None:
        if now > self.stamp:
            factor = math.exp((self.stamp - now) / memory_s)
            self.w *= factor
            self.load *= factor
            self.r *= factor
            self.k *= factor
            self.rr *= factor
            self.rk *= factor
            self.kk *= factor
            self.stamp = now

    def add(self, load: float, r: float, k: float) -> None:
        self.w += 1.0
        self.load += load
        self.r += r
        self.k += k
        self.rr += r * r
        self.rk += r * k
        self.kk += k * k


@dataclass(frozen=True, slots=True)
class Knee:
    """Where the curve says the server stops gaining from concurrency.

    `load` is the knee (None when the observed loads show no queueing: latency does not grow in proportion to
    load anywhere); `past` says every observed load is already beyond it (it lies at or below `lowest`);
    `slope` is the latency elasticity below the knee (0: concurrency is free, 1: it buys no throughput).
    """

    load: float | None
    past: bool
    slope: float
    lowest: float
    highest: float


def _log_tokens(tokens: int | None) -> float:
    return math.log(tokens) if tokens else 0.0


class LoadCurve:
    """Round trips against load. A sample's load is the mean number of requests in flight while it ran.

    Reply length is taken out with one learnt exponent: `y = log rtt - slope × log tokens`, where `slope` is
    the pooled within-level regression of log rtt on log tokens (0 when lengths do not vary or do not matter,
    1 when latency is proportional to length). Within a level the load is the same, so the slope is not
    confounded by load.
    """

    def __init__(self, *, memory_s: float = 60.0) -> None:
        self._levels: dict[int, _Level] = {}
        self.memory_s = memory_s
        self.count = 0
        self._now = 0.0
        self._cache: tuple[int, float, float] | None = None  # (count, slope, spread)
        # (count, min_weight, points): a decision reads the points two or three times between samples
        self._points: tuple[int, float, list[tuple[float, float, float]]] | None = None

    def add(self, now: float, load: float, rtt: float, tokens: int | None) -> None:
        """One finished request: its load (mean in flight while it ran), round trip and reply length.

        A point's weight falls by e every `memory_s` seconds, so the curve follows a server that changes.
        """
        self.count += 1
        self._now = max(self._now, now)
        bucket = round(math.log(max(load, 1.0)) / _BUCKET)
        level = self._levels.get(bucket)
        if level is None:
            level = self._levels[bucket] = _Level(self._now)
        level.age_to(self._now, self.memory_s)
        level.add(load, math.log(rtt), _log_tokens(tokens))

    def _fit(self) -> tuple[float, float]:
        if self._cache is not None and self._cache[0] == self.count:
            return self._cache[1], self._cache[2]
        levels = self._aged()
        cov = var = 0.0
        for level in levels:
            if level.w > 1.0:
                cov += level.rk - level.r * level.k / level.w
                var += level.kk - level.k * level.k / level.w
        weight = sum(level.w for level in levels)
        # Lengths that vary by less than ~20% say nothing about how length matters.
        slope = min(1.0, max(0.0, cov / var)) if weight > 0 and var > 0.03 * weight else 0.0
        residual = dof = 0.0
        for level in levels:
            if level.w > 1.0:
                y = level.r - slope * level.k
                yy = level.rr - 2 * slope * level.rk + slope * slope * level.kk
                residual += yy - y * y / level.w
                dof += level.w - 1.0
        spread = math.sqrt(max(residual, 0.0) / dof) if dof >= 8.0 else _PRIOR_SPREAD
        spread = max(spread, _MIN_SPREAD)
        self._cache = (self.count, slope, spread)
        return slope, spread

    def _aged(self) -> list[_Level]:
        for level in self._levels.values():
            level.age_to(self._now, self.memory_s)
        return list(self._levels.values())

    def length_slope(self) -> float:
        """How log round trip grows with log reply length (0..1)."""
        return self._fit()[0]

    def spread(self) -> float:
        """The standard deviation of a normalised log round trip at one load: the load-independent noise."""
        return self._fit()[1]

    def knee(self, *, min_weight: float, penalty: float = 4.5) -> Knee | None:
        """Fit the server model to the points holding at least `min_weight` samples' worth; None unless they
        span loads at least `_MIN_RANGE` apart (nothing to compare).

        Model, in logs: latency grows with elasticity `slope` (0..1, batching) up to the knee, then in
        proportion to load (a queue, or processor sharing past capacity). Four explanations compete, each
        scored by its misfit in units of the measured spread plus `penalty` per parameter, so a richer one wins
        only when it explains clearly more (spread alone never makes a knee):

        * flat (1 parameter) or a straight line of any slope (2): no knee among the loads seen;
        * in proportion to load from the lowest point on (1, and only when it beats flat by two penalties: it
          cuts below every load seen), or a line as steep: every load seen is past the knee;
        * a knee at one of the inner points, with its own slope below (3).
        """
        spread = self.spread() ** 2
        # A point's mean is known to its sampling error, but never better than `_SYSTEMATIC`: latency also moves
        # with what the model leaves out (the prompt mix, the host), and a curve fitted to that finds a false knee.
        points = [(math.log(load), 1.0 / (spread / w + _SYSTEMATIC**2), y) for load, w, y in self.points(min_weight)]
        if len(points) < 2 or points[-1][0] - points[0][0] < math.log(_MIN_RANGE):
            return None  # loads this close say nothing about how latency grows with load
        lowest, highest = math.exp(points[0][0]), math.exp(points[-1][0])
        line_slope, line_sse = _fit_line(points, 1.5)
        _, flat_sse = _fit_line(points, 0.0)
        _, past_sse = _fit_line([(x, w, y - x) for x, w, y in points], 0.0)  # slope exactly one
        past = Knee(lowest, True, 1.0, lowest, highest)
        none = Knee(None, False, line_slope, lowest, highest)
        candidates = [
            (flat_sse + penalty, Knee(None, False, 0.0, lowest, highest)),
            (line_sse + 2 * penalty, past if line_slope >= 0.9 else none),
        ]
        if past_sse <= flat_sse - 2 * penalty:  # it cuts below every load seen: it must beat flat clearly
            candidates.append((past_sse + penalty, past))
        for knee_x, slope, sse in _knee_fits(points):
            candidates.append((sse + 3 * penalty, Knee(math.exp(knee_x), False, slope, lowest, highest)))
        return min(candidates, key=lambda candidate: candidate[0])[1]

    def flat_until(self, *, min_weight: float) -> float:
        """For a curve past its knee at every point: the load up to which latency stays flat, fitted as
        `y = a + log(max(load, knee))` with the knee anywhere from the lowest point to the highest (the lowest
        point when nothing lies above the line of slope one: the knee is at or below it)."""
        points = [(math.log(load), w, y) for load, w, y in self.points(min_weight)]
        if len(points) < 2:
            return math.exp(points[0][0]) if points else 0.0
        low, high = points[0][0], points[-1][0]
        best, best_sse = low, math.inf
        for step in range(_KNEE_GRID + 1):
            knee = low + (high - low) * step / _KNEE_GRID
            _, sse = _fit_line([(max(x, knee), w, y - max(x, knee)) for x, w, y in points], 0.0)
            if sse < best_sse - 1e-12:
                best, best_sse = knee, sse
        return math.exp(best)

    def highest_load(self, *, min_weight: float) -> float:
        """The highest mean load among points holding `min_weight` samples' worth (0 with none)."""
        return max((load for load, _, _ in self.points(min_weight)), default=0.0)

    def points(self, min_weight: float) -> list[tuple[float, float, float]]:
        """(mean load, weight, mean normalised log rtt) of levels pooled with their neighbours (loads within
        `_POOL_SPAN` of each other) until each holds `min_weight` samples' worth; sparser stretches are left
        out. A ramp or a probe spreads its samples over several levels: pooled, they still count.

        The curve changes only with a sample (its clock too), so the points are kept until the next one."""
        cached = self._points
        if cached is not None and cached[0] == self.count and cached[1] == min_weight:
            return cached[2]
        out: list[tuple[float, float, float]] = []
        w = load = y = 0.0
        first = 0.0
        for level_load, level_w, level_y in self.levels():
            if w > 0 and level_load > first * _POOL_SPAN:
                w = load = y = 0.0  # too far from where this group began: start afresh
            if w == 0:
                first = level_load
            w += level_w
            load += level_load * level_w
            y += level_y * level_w
            if w >= min_weight:
                out.append((load / w, w, y / w))
                w = load = y = 0.0
        self._points = (self.count, min_weight, out)
        return out

    def levels(self) -> list[tuple[float, float, float]]:
        """(mean load, weight, mean normalised log rtt) per level, lowest load first (for reports and tests)."""
        slope = self.length_slope()
        out = []
        for bucket in sorted(self._levels):
            level = self._levels[bucket]
            level.age_to(self._now, self.memory_s)
            if level.w > 0:
                out.append((level.load / level.w, level.w, (level.r - slope * level.k) / level.w))
        return out


def _knee_fits(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """(knee, slope, sse) of the knee model at each inner point: `_fit_line` of the points with every one past
    the knee moved onto it (x -> knee, y -> y - (x - knee)), slope in [0, 1], for all knees in one pass.

    Points at or left of the knee are unchanged and those right of it all sit at x = knee, so each fit's weighted
    sums come from prefix sums over the left part and suffix sums over the right: O(points), not O(points²) —
    the fit runs at every decision of every endpoint's latency limit."""
    n = len(points)
    # prefix sums of w, wx, wy, wxx, wxy, wyy over points[:i]; suffix sums of w, w·d, w·d² (d = y - x) over [i:]
    pre = [(0.0,) * 6]
    for x, w, y in points:
        a = pre[-1]
        pre.append((a[0] + w, a[1] + w * x, a[2] + w * y, a[3] + w * x * x, a[4] + w * x * y, a[5] + w * y * y))
    suf = [(0.0,) * 3] * (n + 1)
    for i in range(n - 1, -1, -1):
        x, w, y = points[i]
        d, b = y - x, suf[i + 1]
        suf[i] = (b[0] + w, b[1] + w * d, b[2] + w * d * d)
    fits = []
    for j in range(1, n - 1):
        k = points[j][0]
        split = j + 1
        while split < n and points[split][0] <= k:  # equal loads stay left of the knee, as min(x, k) keeps them
            split += 1
        sw, swx, swy, swxx, swxy, swyy = pre[split]
        rw, rd, rdd = suf[split]
        # the right part at x = k, y = d + k
        sw += rw
        swx += k * rw
        ry = rd + k * rw
        swy += ry
        swxx += k * k * rw
        swxy += k * ry
        swyy += rdd + 2 * k * rd + k * k * rw
        sxx = swxx - swx * swx / sw
        sxy = swxy - swx * swy / sw
        syy = swyy - swy * swy / sw
        slope = min(1.0, max(0.0, sxy / sxx)) if sxx > 0 else 0.0
        fits.append((k, slope, max(0.0, syy - 2 * slope * sxy + slope * slope * sxx)))
    return fits


def _fit_line(points: list[tuple[float, float, float]], max_slope: float) -> tuple[float, float]:
    """Weighted least squares `y = a + slope × x` with the slope held in [0, max_slope]; (slope, sse).

    One pass over the points, about the first (shifted) point: the sums stay small, so the closed-form misfit
    loses no precision that matters, and a decision fits several lines (`flat_until` forty)."""
    x0, _, y0 = points[0]
    sw = swx = swy = swxx = swxy = swyy = 0.0
    for x, w, y in points:
        x -= x0
        y -= y0
        wx, wy = w * x, w * y
        sw += w
        swx += wx
        swy += wy
        swxx += wx * x
        swxy += wx * y
        swyy += wy * y
    sxx = swxx - swx * swx / sw
    sxy = swxy - swx * swy / sw
    syy = swyy - swy * swy / sw
    slope = min(max_slope, max(0.0, sxy / sxx)) if sxx > 0 else 0.0
    return slope, max(0.0, syy - 2 * slope * sxy + slope * slope * sxx)


@dataclass(slots=True)
class Window:
    """The samples since the last decision: their loads, log round trips and log reply lengths."""

    loads: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=list)
    k: list[float] = field(default_factory=list)
    full: int = 0

    def add(self, load: float, rtt: float, tokens: int | None, *, full: bool) -> None:
        self.loads.append(load)
        self.r.append(math.log(rtt))
        self.k.append(_log_tokens(tokens))
        self.full += full

    def __len__(self) -> int:
        return len(self.r)

    def clear(self) -> None:
        self.loads.clear()
        self.r.clear()
        self.k.clear()
        self.full = 0

    @property
    def mean_load(self) -> float:
        return sum(self.loads) / len(self.loads)

    @property
    def fully_used(self) -> bool:
        """Whether the limit was reached at most of the window's completions (unused headroom proves nothing)."""
        return 2 * self.full >= len(self.r)

    def mean(self, slope: float) -> float:
        """Mean normalised log round trip under the curve's current length slope."""
        return (sum(self.r) - slope * sum(self.k)) / len(self.r)
