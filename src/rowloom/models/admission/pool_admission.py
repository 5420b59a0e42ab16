"""`PooledAdmission`: the controller's admission of pooled aliases — one queue, routed to member endpoints.

Owns how a pooled alias's request is admitted (straight to the member with most headroom, or queued in the pool
and taken by the member that frees a slot first), spilling to fallbacks, and sparing a down member's breaker while
its pool has others. The routing rules are `EndpointPool`'s; the endpoints' own admission (room, leases, budgets,
health) is the controller's, which this class is part of.
"""

from __future__ import annotations

from rowloom.concurrency.fair_queue import Selection
from rowloom.models.admission.endpoint import EndpointState, Waiter
from rowloom.models.admission.leases import RequestLease
from rowloom.models.admission.pools import EndpointPool, Member
from rowloom.observe.events.request import RequestQueued


class PooledAdmission:
    """Mixed into `RequestAdmissionController`: the pooled half of admission (see the module docstring). It uses
    the controller's endpoint admission (`_can_admit`, `_has_room`, `_alias_room`, `_admit`, `_wait`, timers)."""

    async def _acquire_pooled(
        self, pool: EndpointPool, group: str, weight: float, tokens: int, deadline: float | None, retry: bool
    ) -> RequestLease:
        """`acquire` for a pooled alias: straight to the member with most headroom, else one queue for all."""
        loop = self._binding.bind()
        if (failed := pool.failure()) is not None:
            raise failed
        now = self._clock.now()
        if not pool.queue and (member := pool.route(lambda m: self._fits(m, tokens, now), self._ledger.in_flight)):
            return self._admit(member.state, pool.alias, group, tokens, now, now)
        if deadline is not None and deadline <= now:
            raise self._timeout(pool.members[0].state, pool.alias)
        waiter = Waiter(pool.alias, group, tokens, loop.create_future(), now)
        pool.push(waiter, weight=weight, retry=retry)
        self._emit(
            RequestQueued,
            key=pool.label,
            alias=pool.alias,
            group=group,
            waiters=len(pool.queue),
            in_flight=pool.in_flight(self._ledger.in_flight),
            limit=pool.capacity(),
        )
        self._dispatch_pool(pool)
        return await self._wait(
            waiter,
            deadline,
            pool.remove,
            lambda: self._dispatch_pool(pool),
            lambda: self._timeout(pool.members[0].state, pool.alias),
        )

    def _try_pooled(self, pool: EndpointPool, group: str, tokens: int) -> RequestLease | None:
        """`try_acquire` for a pooled alias."""
        if (failed := pool.failure()) is not None:
            raise failed
        now = self._clock.now()
        member = pool.route(lambda m: self._fits(m, tokens, now), self._ledger.in_flight)
        return None if pool.queue or member is None else self._admit(member.state, pool.alias, group, tokens, now, now)

    def _dispatch_pool(self, pool: EndpointPool) -> None:
        """Offer the pool's waiters to its members, most headroom first; time the next spill to a fallback."""
        for member in pool.by_headroom(self._ledger.in_flight):
            if not pool.queue:
                break
            self._serve(pool, member)
        self._arm_spill(pool)

    def _serve(self, pool: EndpointPool, member: Member) -> None:
        """Admit the pool's waiters on `member` while it has room and the routing rule lets it take them."""
        state = member.state
        if state.queue:  # the key's own waiters come first
            return

        def select() -> Selection[str, Waiter] | None:
            ok = pool.queue and self._alias_room(state, pool.alias)
            return pool.pick(member, self._clock.now()) if ok else None

        self._hand_out(state, select, pool.take, pool.label)
        if member.fallback:
            self._arm_spill(pool)

    def _arm_spill(self, pool: EndpointPool) -> None:
        """Wake the pool's fallbacks when its saturation has lasted `spill_after_s` (already due: they take
        waiters as they free slots)."""
        due = pool.spill_due()
        if due is not None and due > self._clock.now():
            pool.spill_timer.arm(pool.spill_due, lambda: self._dispatch_pool(pool))

    def _fits(self, member: Member, tokens: int, now: float) -> bool:
        return self._can_admit(member.state, member.alias, tokens, now)

    @staticmethod
    def _spared(state: EndpointState) -> bool:
        """A pool's endpoint while each of its pools has another endpoint up: its breaker waits — it keeps being
        probed and rejoins when it answers. Only an endpoint the run depends on stops the run."""
        return (
            bool(state.pools)
            and not state.queue
            and all(any(m.available for m in pool.members if m.state is not state) for pool in state.pools)
        )
