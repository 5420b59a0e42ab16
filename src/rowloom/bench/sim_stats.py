"""Counters the simulator reports on `GET /stats`: replies by status and path, in-flight, tokens, own CPU,
and outages with what they cut.

Owns only accounting; the caller passes `now` (loop time) so the time-weighted mean is exact per event.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any


class SimStats:
    """Accounting since start or the last reset. In-flight counts requests in service, not rejected ones."""

    def __init__(self, now: float):
        self.in_flight = 0
        self.reset(now)

    def reset(self, now: float) -> None:
        """Zero the counters; requests still in service stay counted as in flight."""
        self._started = now
        self._cpu0 = time.process_time()
        self._by_status: Counter[int] = Counter()
        self._by_path: Counter[str] = Counter()
        self._peak = self.in_flight
        self._area = 0.0  # integral of in_flight over time, for the time-weighted mean
        self._changed = now
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._cached_tokens = 0
        self._reasoning_tokens = 0
        self._usage_omitted = 0
        self._service: list[float] = []  # no-load service times of requests served normally
        self._outages = 0
        self._connections_cut = 0
        self._requests_cut = 0

    def record(self, path: str, status: int) -> None:
        """Count one reply to a model endpoint."""
        self._by_status[status] += 1
        self._by_path[path] += 1

    def add_tokens(self, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> None:
        """Count the tokens a served reply reported (cached is part of prompt, reasoning part of completion)."""
        self._prompt_tokens += prompt
        self._completion_tokens += completion
        self._cached_tokens += cached
        self._reasoning_tokens += reasoning

    def usage_omitted(self) -> None:
        """A served reply left out its `usage` block (its tokens are not counted above)."""
        self._usage_omitted += 1

    def served(self, no_load_s: float) -> None:
        """A request was served normally; `no_load_s` is the time it would have taken alone."""
        self._service.append(no_load_s)

    def outage(self, connections_cut: int) -> None:
        """An outage began and closed `connections_cut` open connections."""
        self._outages += 1
        self._connections_cut += connections_cut

    def request_cut(self) -> None:
        """A request in service was dropped by an outage (it gets no reply, so it has no status)."""
        self._requests_cut += 1

    def enter(self, now: float) -> None:
        """A request entered service."""
        self._area += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight += 1
        if self.in_flight > self._peak:
            self._peak = self.in_flight

    def leave(self, now: float) -> None:
        """A request left service (answered, failed or abandoned by its client)."""
        self._area += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight -= 1

    def snapshot(self, now: float, **extra: Any) -> dict[str, Any]:
        """The `/stats` document; `extra` adds server facts such as the current capacity."""
        wall = max(0.0, now - self._started)
        area = self._area + self.in_flight * (now - self._changed)
        total = sum(self._by_status.values())
        cpu = time.process_time() - self._cpu0
        return {
            "requests_total": total,
            "by_status": {str(code): n for code, n in sorted(self._by_status.items())},
            "by_path": dict(sorted(self._by_path.items())),
            "in_flight": self.in_flight,
            "peak_in_flight": self._peak,
            "mean_in_flight": area / wall if wall > 0 else 0.0,
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "cached_tokens": self._cached_tokens,
            "reasoning_tokens": self._reasoning_tokens,
            "usage_omitted": self._usage_omitted,
            "cpu_s": cpu,
            "cpu_ms_per_request": 1000.0 * cpu / total if total else 0.0,
            "wall_s": wall,
            # The median a client would see at no load: latency against it tells queueing from spread.
            "service_p50_s": statistics.median(self._service) if self._service else None,
            "outages": self._outages,
            "outage_connections_cut": self._connections_cut,
            "outage_requests_cut": self._requests_cut,
            **extra,
        }
