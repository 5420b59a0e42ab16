"""Request and token rate limits of the simulated provider, and the `x-ratelimit-*` headers that report them.

Window model: a token bucket per limit, burst = the per-minute limit, refilling continuously at limit/60 per
second (how OpenAI describes its limits). Owns no HTTP and no clock: callers pass `now` in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

LimitKind = Literal["requests", "tokens"]


def format_duration(seconds: float) -> str:
    """OpenAI's reset-duration style: `"20ms"` below a second, `"1.5s"` below a minute, `"6m0s"` above."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}m{f'{rest:.3f}'.rstrip('0').rstrip('.')}s"


class TokenBucket:
    """A bucket of `limit` units refilling at `limit / 60` units per second, full at start."""

    __slots__ = ("_level", "_stamp", "limit", "rate")

    def __init__(self, limit_per_minute: int, now: float):
        self.limit = float(limit_per_minute)
        self.rate = self.limit / 60.0
        self._level = self.limit
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._level = min(self.limit, self._level + (now - self._stamp) * self.rate)
            self._stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` units are available (0 if they are now).

        An amount above the burst can never be granted; the answer is then the time to a full bucket, so a
        client told to wait that long learns the request is too large rather than spinning.
        """
        self._refill(now)
        missing = min(amount, self.limit) - self._level
        if amount > self.limit:
            return max(missing / self.rate, 1.0)
        return max(0.0, missing / self.rate)

    def take(self, amount: float, now: float) -> None:
        """Spend `amount` units (callers check `wait_for` first)."""
        self._refill(now)
        self._level -= amount

    def remaining(self, now: float) -> int:
        """Whole units available now."""
        self._refill(now)
        return max(0, math.floor(self._level))

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again (OpenAI's `x-ratelimit-reset-*`)."""
        self._refill(now)
        return max(0.0, (self.limit - self._level) / self.rate)

    def refill_completely(self, now: float) -> None:
        """Back to a full bucket (used by `/stats/reset`)."""
        self._level = self.limit
        self._stamp = now


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict for one request: allowed or not, how long to wait, and the headers to send either way."""

    allowed: bool
    wait_s: float = 0.0
    limited_by: LimitKind | None = None
    headers: dict[str, str] = field(default_factory=dict)


class RateLimits:
    """The rpm and tpm buckets of one provider; a request is charged to both or to neither."""

    def __init__(self, rpm: int | None, tpm: int | None, now: float):
        self._buckets: dict[LimitKind, TokenBucket] = {}
        if rpm is not None:
            self._buckets["requests"] = TokenBucket(rpm, now)
        if tpm is not None:
            self._buckets["tokens"] = TokenBucket(tpm, now)

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured (otherwise admission is free and no headers are sent)."""
        return bool(self._buckets)

    def admit(self, tokens: int, now: float) -> RateDecision:
        """Charge one request of `tokens` tokens, or refuse it with the wait until both budgets suffice."""
        if not self._buckets:
            return RateDecision(True)
        cost: dict[LimitKind, float] = {"requests": 1.0, "tokens": float(tokens)}
        waits = {kind: bucket.wait_for(cost[kind], now) for kind, bucket in self._buckets.items()}
        kind, wait = max(waits.items(), key=lambda item: item[1])
        if wait > 0:
            return RateDecision(False, wait, kind, self.headers(now))
        for kind, bucket in self._buckets.items():
            bucket.take(cost[kind], now)
        return RateDecision(True, 0.0, None, self.headers(now))

    def headers(self, now: float) -> dict[str, str]:
        """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the configured limits."""
        out: dict[str, str] = {}
        for kind, bucket in self._buckets.items():
            out[f"x-ratelimit-limit-{kind}"] = str(int(bucket.limit))
            out[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining(now))
            out[f"x-ratelimit-reset-{kind}"] = format_duration(bucket.reset_s(now))
        return out

    def reset(self, now: float) -> None:
        """Refill every bucket (a fresh window after `/stats/reset`)."""
        for bucket in self._buckets.values():
            bucket.refill_completely(now)
