"""The circuit breaker: notices an endpoint that has rejected or failed everything for too long.

Owns, per resource key, since when nothing has succeeded and the last error; must not touch leases or queues
(the executor turns an open circuit into `EndpointUnavailable` and fails the key's waiters).
"""

from __future__ import annotations

from dataclasses import dataclass

from rowloom.models.admission.keys import ResourceKey


@dataclass(slots=True)
class _Failing:
    since: float
    last_error: str
    failures: int = 0


class CircuitBreaker:
    """Opens for a key whose requests have all failed for `open_after_s`, counted from the first failure.

    Idle time does not count (the clock starts at the first failure after a success), and a request that is
    merely slow does not trip it: only a failure observed after the bound opens the circuit.
    """

    def __init__(self, open_after_s: float):
        self.open_after_s = open_after_s
        self._failing: dict[ResourceKey, _Failing] = {}

    def on_success(self, key: ResourceKey) -> None:
        self._failing.pop(key, None)

    def on_failure(self, key: ResourceKey, now: float, error: str) -> bool:
        """Record a failure; True when the circuit is (now) open."""
        state = self._failing.get(key)
        if state is None:
            state = self._failing[key] = _Failing(now, error)
        state.last_error = error
        state.failures += 1
        return now - state.since >= self.open_after_s

    def failing_for(self, key: ResourceKey, now: float) -> float:
        """Seconds since the first failure with no success after it (0 when healthy)."""
        state = self._failing.get(key)
        return 0.0 if state is None else now - state.since

    def last_error(self, key: ResourceKey) -> str | None:
        state = self._failing.get(key)
        return None if state is None else state.last_error

    def failures(self, key: ResourceKey) -> int:
        state = self._failing.get(key)
        return 0 if state is None else state.failures
