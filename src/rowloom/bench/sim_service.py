"""The seeded chance in serving one request: how long its service takes and which fault, if any, it meets.

One `random.Random(seed)` drives both, so a run with the same seed and arrival order repeats exactly.
Owns no HTTP, no timers and no reply content (replies depend on the prompt only, see `sim_replies`).
"""

from __future__ import annotations

import enum
import math
import random

from rowloom.bench.sim_config import SimulatorConfig


class Fault(enum.Enum):
    """A failure the simulator injects into an admitted request."""

    ERROR = "error"  # HTTP error_status (500, 502 or 504) at once
    OVERLOAD = "overload"  # HTTP overload_status (503 or 529) at once
    TIMEOUT = "timeout"  # held open for hang_s, then answered normally
    MALFORMED = "malformed"  # HTTP 200, body is not JSON
    TRUNCATED = "truncated"  # HTTP 200, JSON body cut in the middle


class ServiceDraws:
    """Latency samples and fault draws for admitted requests, from the config's seed."""

    def __init__(self, config: SimulatorConfig):
        self._config = config
        self._rng = random.Random(config.seed)
        # Cumulative thresholds: one uniform draw picks at most one fault, so the rates mean what they say.
        thresholds: list[tuple[float, Fault]] = []
        total = 0.0
        for rate, fault in (
            (config.error_rate, Fault.ERROR),
            (config.overload_rate, Fault.OVERLOAD),
            (config.timeout_rate, Fault.TIMEOUT),
            (config.malformed_rate, Fault.MALFORMED),
            (config.truncated_rate, Fault.TRUNCATED),
        ):
            if rate > 0:
                total += rate
                thresholds.append((total, fault))
        self._thresholds = tuple(thresholds)
        # Lognormal with mu = -sigma^2/2 has mean 1, so `latency_s` stays the mean whatever the jitter.
        self._sigma = config.jitter
        self._mu = -config.jitter * config.jitter / 2.0

    def fault(self) -> Fault | None:
        """The fault for the next admitted request, or None (no draw is spent when no rate is set)."""
        if not self._thresholds:
            return None
        draw = self._rng.random()
        for threshold, fault in self._thresholds:
            if draw < threshold:
                return fault
        return None

    def violates_schema(self) -> bool:
        """Whether the next structured reply should break its schema."""
        rate = self._config.schema_invalid_rate
        return rate > 0 and (rate >= 1.0 or self._rng.random() < rate)

    def omits_usage(self) -> bool:
        """Whether the next successful reply should leave out its `usage` block."""
        rate = self._config.omit_usage_rate
        return rate > 0 and (rate >= 1.0 or self._rng.random() < rate)

    def service_s(self, completion_tokens: int) -> float:
        """No-load service time: mean latency with jitter, plus the per-token cost of the completion."""
        config = self._config
        base = config.latency_s
        if base > 0 and config.jitter > 0:
            if config.jitter_kind == "uniform":
                base *= max(0.0, 1.0 + self._rng.uniform(-config.jitter, config.jitter))
            else:
                base *= math.exp(self._rng.gauss(self._mu, self._sigma))
        return base + config.latency_per_token_s * completion_tokens
