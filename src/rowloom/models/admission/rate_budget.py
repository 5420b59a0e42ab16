"""Per-model request and token budgets (rpm/tpm), enforced before a request is sent.

Owns two token buckets and their corrections from reported usage; must not know about queues or leases.
"""

from __future__ import annotations

_EPS = 1e-9


class TokenBucket:
    """Refills at `per_minute / 60` per second up to `burst_s` seconds' worth (at least one unit).

    A take larger than the whole bucket is allowed once the bucket is full (the level goes negative and
    pays it back), so an oversized request waits but never deadlocks.
    """

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: float, *, burst_s: float, now: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def ready(self, amount: float, now: float) -> bool:
        """Whether `amount` may be taken at `now`."""
        self._refill(now)
        return self.level + _EPS >= min(amount, self.capacity)

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` may be taken."""
        self._refill(now)
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def give(self, amount: float) -> None:
        """Return (positive) or charge (negative) units after the fact."""
        self.level = min(self.capacity, self.level + amount)

    def drain(self, now: float) -> None:
        """The provider says nothing is left: start refilling from empty."""
        self._refill(now)
        self.level = min(self.level, 0.0)


class RateBudget:
    """Optional rpm and tpm buckets of one resource key: configured, or learnt from rate-limit headers."""

    def __init__(self, *, rpm: float | None, tpm: float | None, burst_s: float, now: float):
        self.requests = TokenBucket(rpm, burst_s=burst_s, now=now) if rpm else None
        self.tokens = TokenBucket(tpm, burst_s=burst_s, now=now) if tpm else None
        self._burst_s = burst_s

    def learn(self, kind: str, per_minute: float, now: float) -> None:
        """The provider reports the `kind` budget ("requests" or "tokens") spent, refilling at `per_minute`.

        Pace at no more than that rate from an empty bucket (a configured, slower budget is kept).
        """
        bucket: TokenBucket | None = getattr(self, kind)
        if bucket is None or per_minute < bucket.rate * 60:
            bucket = TokenBucket(per_minute, burst_s=self._burst_s, now=now)
            setattr(self, kind, bucket)
        bucket.drain(now)

    def ready(self, tokens: int, now: float) -> bool:
        """Whether one request estimated at `tokens` tokens fits both budgets now."""
        if self.requests is not None and not self.requests.ready(1, now):
            return False
        return self.tokens is None or self.tokens.ready(tokens, now)

    def wait_s(self, tokens: int, now: float) -> float:
        """Seconds until such a request fits."""
        waits = [0.0]
        if self.requests is not None:
            waits.append(self.requests.wait_s(1, now))
        if self.tokens is not None:
            waits.append(self.tokens.wait_s(tokens, now))
        return max(waits)

    def take(self, tokens: int, now: float) -> None:
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)

    def settle(self, reserved: int, used: int | None, *, rejected: bool) -> None:
        """Correct the token reservation: by the reported usage, or refund it all for a rejected request."""
        if self.tokens is None:
            return
        if used is not None:
            self.tokens.give(reserved - used)
        elif rejected:
            self.tokens.give(reserved)
