"""Request counters built from request events: outcomes, 429s, in-flight, tokens, latency.

A sink like any other, so the summary, the progress line and benchmarks read one source of truth.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rowloom.observe.events.base import Event


class RequestStats:
    """Counts request attempts by outcome; tracks requests in flight and token usage."""

    def __init__(self) -> None:
        self.by_outcome: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rate_limited = 0
        self.tokens = 0
        self.latency_sum_s = 0.0

    def emit(self, event: Event) -> None:
        kind = event.kind
        if kind == "request_admitted":
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        elif kind == "request_completed":
            self.in_flight = max(0, self.in_flight - 1)
            outcome = str(getattr(event, "outcome", "unknown"))
            self.by_outcome[outcome] += 1
            if outcome == "rate_limited":
                self.rate_limited += 1
            self.tokens += int(getattr(event, "tokens", 0) or 0)
            self.latency_sum_s += float(getattr(event, "latency_s", 0.0) or 0.0)

    def close(self) -> None:
        return None

    @property
    def total(self) -> int:
        """Request attempts that ended (any outcome)."""
        return sum(self.by_outcome.values())

    def summary(self) -> dict[str, Any]:
        """The `requests` section of summary.json."""
        total = self.total
        return {
            "total": total,
            "by_outcome": dict(self.by_outcome),
            "rate_limited_share": round(self.rate_limited / total, 4) if total else 0.0,
            "peak_in_flight": self.peak_in_flight,
            "tokens": self.tokens,
            "mean_latency_s": round(self.latency_sum_s / total, 4) if total else 0.0,
        }
