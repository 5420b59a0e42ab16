"""Key-wide pauses: hold every request to an endpoint while the evidence says its rate budget is spent.

Owns that evidence (consecutive 429s, rate-limit headers) and the pause deadline; never touches limits,
leases or timers (the controller arms a timer for `until`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rowloom.models.types import RateLimitInfo


@dataclass(frozen=True, slots=True)
class Pause:
    """A pause decision: the key admits nothing before `until`; `started` is False when it only extended one."""

    until: float
    reason: str
    started: bool


class Cooldown:
    """Tells a spent rate budget apart from a concurrency overload.

    A single 429 only delays its own request (the executor sleeps its Retry-After). The key pauses when
    `x-ratelimit-remaining-*` reads zero with no known budget size (until the matching reset; a budget whose
    size is known is paced at its refill rate instead, see `feedback`), or after `threshold` counted 429s with
    no success in between (for the Retry-After, else `default_s`). The count survives the pause: if the first
    429 after it says the budget is still spent, the key pauses again at once instead of hammering.
    """

    def __init__(self, *, threshold: int, default_s: float, max_s: float):
        self.threshold = threshold
        self.default_s = default_s
        self.max_s = max_s
        self.until: float | None = None
        self.reason = ""
        self.consecutive_429 = 0

    def active(self, now: float) -> bool:
        """Whether the key is paused at `now`."""
        return self.until is not None and now < self.until

    def expire(self, now: float) -> bool:
        """End a pause whose time has come; True exactly once per pause."""
        if self.until is not None and now >= self.until:
            self.until = None
            return True
        return False

    def on_success(self, now: float, rate_limit: RateLimitInfo) -> Pause | None:
        """A success clears the 429 run; its headers may still say the budget is now empty."""
        self.consecutive_429 = 0
        return self._from_headers(now, rate_limit)

    def on_rate_limited(
        self, now: float, *, retry_after_s: float | None, rate_limit: RateLimitInfo, counts: bool
    ) -> Pause | None:
        """A 429. `counts` is False for a 429 from a burst already answered (admitted before the last cut)."""
        pause = self._from_headers(now, rate_limit)
        if pause is not None:
            return pause
        if counts:
            self.consecutive_429 += 1
        if self.consecutive_429 < self.threshold:
            return None
        seconds = retry_after_s if retry_after_s is not None and retry_after_s > 0 else self.default_s
        return self._extend(now + min(seconds, self.max_s), f"{self.consecutive_429} consecutive 429s")

    def hold(self, until: float, reason: str) -> Pause | None:
        """Pause until `until` on evidence gathered elsewhere (another process saw the provider ask for it)."""
        return self._extend(until, reason)

    def _from_headers(self, now: float, rate_limit: RateLimitInfo) -> Pause | None:
        wait = rate_limit.exhausted_until_s
        if wait is None:
            return None
        return self._extend(now + min(max(wait, 0.0), self.max_s), "rate-limit headers report the budget spent")

    def _extend(self, until: float, reason: str) -> Pause | None:
        if self.until is not None and until <= self.until:
            return None
        started = self.until is None
        self.until, self.reason = until, reason
        return Pause(until, reason, started)
