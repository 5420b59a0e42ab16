"""`AdmissionViews`: what request admission tells the engine and observability — capacity, saturation, health.

Owns only reads of the controller's state (a pooled alias answers for its pool as a whole); decides nothing.
"""

from __future__ import annotations

from typing import Any

from rowloom.models.admission.keys import ResourceKey


class AdmissionViews:
    """Mixed into `RequestAdmissionController`: its read-only views (it provides `_registry`, `_ledger`,
    `_clock`)."""

    def key_for(self, alias: str, *, domain: str = "chat") -> ResourceKey:
        """The resource key an alias is registered on (a pool's: its first endpoint's)."""
        if (pool := self._registry.pool(alias, domain)) is not None:
            return pool.members[0].state.key
        return self._registry.resolve(alias, domain)[0].key

    def capacity(self, alias: str, *, domain: str = "chat") -> int:
        """Requests the alias may have in flight now (its key's current limit, within its own ceiling; a pool's:
        the sum over its endpoints that are up)."""
        if (pool := self._registry.pool(alias, domain)) is not None:
            return pool.capacity()
        state, name = self._registry.resolve(alias, domain)
        ceiling = state.alias_ceiling(name)
        return state.limit.limit if ceiling is None else min(ceiling, state.limit.limit)

    def saturated(self, alias: str, *, domain: str = "chat") -> bool:
        """Whether the alias's endpoint is saturated: waiters are queued or it is cooling down (a pool: waiters
        are queued for it, or every endpoint is cooling)."""
        if (pool := self._registry.pool(alias, domain)) is not None:
            now = self._clock.now()
            return bool(pool.queue) or all(m.state.cooldown.active(now) for m in pool.members)
        state, _ = self._registry.resolve(alias, domain)
        return bool(state.queue) or state.cooldown.active(self._clock.now())

    def cooling(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> bool:
        """Whether the endpoint is paused by a cooldown (its rate budget is evidently spent; a pool: every one)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return all(self.cooling(m.state.key) for m in pool.members)
        state, _ = self._registry.resolve(alias_or_key, domain)
        return state.cooldown.active(self._clock.now())

    def cooling_for(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> float:
        """Seconds the key behind `alias_or_key` stays paused (0 when it is not; a pool: its first to resume)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return min(self.cooling_for(m.state.key) for m in pool.members)
        until = self._registry.resolve(alias_or_key, domain)[0].cooldown.until
        return 0.0 if until is None else max(0.0, until - self._clock.now())

    def down(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> bool:
        """Whether the endpoint is judged down: its requests wait while one probe at a time goes out (a pool:
        every endpoint is down or failed)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return not any(m.available for m in pool.members)
        return self._registry.resolve(alias_or_key, domain)[0].health.down

    def failure(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> BaseException | None:
        """The error every request on the key raises once it failed for good (its circuit opened), else None (a
        pool fails with its last endpoint)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return pool.failure()
        return self._registry.resolve(alias_or_key, domain)[0].failed

    def in_flight(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> int:
        """Live leases on the key behind `alias_or_key` (all its aliases together; a pool: on all its endpoints)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return pool.in_flight(self._ledger.in_flight)
        return self._ledger.in_flight(self._registry.resolve(alias_or_key, domain)[0].key)

    def waiting(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> int:
        """Acquires queued on the key behind `alias_or_key` (a pool: in the pool's queue)."""
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return len(pool.queue)
        return len(self._registry.resolve(alias_or_key, domain)[0].queue)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per key label: limit, bounds, in flight, peak, waiters, cooldown, observed max limit, 429 count."""
        now = self._clock.now()
        return {s.label: s.snapshot(self._ledger.in_flight(s.key), now) for s in self._registry}

    @property
    def generation(self) -> int:
        """Stamped on every lease; leases of an older generation release as STALE."""
        return self._ledger.generation

    def recently_released(self) -> list[int]:
        """Ids of recently released leases (bounded), for diagnostics."""
        return self._ledger.recently_released()
