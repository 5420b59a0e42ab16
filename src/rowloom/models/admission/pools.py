"""`EndpointPool`: one model alias served by several endpoints — one fair queue, routed by learned headroom.

Owns the pool's members, its waiter queue and the routing rules (which endpoint a new request goes to, which
waiters an endpoint may take, when a fallback may spill); the controller owns the endpoints' admission state and
calls these rules where it admits. Each member is an ordinary alias on its endpoint's key, so every endpoint keeps
its own limit, cooldowns, health, rate budgets and caps, shared with any other alias that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rowloom.concurrency.clock import Clock
from rowloom.concurrency.fair_queue import FairQueue, Selection
from rowloom.concurrency.wakeup import Wakeup
from rowloom.models.admission.endpoint import EndpointState, Waiter
from rowloom.models.admission.keys import ResourceKey
from rowloom.observe.events.request import POOL_QUEUE_PREFIX


@dataclass(eq=False, slots=True)
class Member:
    """One endpoint of a pool: the alias the pool's requests are admitted under on it, its state, its tier."""

    alias: str
    state: EndpointState
    fallback: bool

    @property
    def available(self) -> bool:
        """Neither failed for good nor judged down (a down member still gets its probes)."""
        return self.state.failed is None and not self.state.health.down


InFlight = Callable[[ResourceKey], int]


class EndpointPool:
    """The endpoints of one pooled alias and the one fair queue its waiting requests share.

    Routing rule: a new request goes, when nobody waits, to the endpoint with the most headroom — the lowest
    in flight ÷ learned limit, ties to the lower observed latency — among those with room, so an endpoint twice
    as strong carries twice the load. Waiters are taken by whichever endpoint frees a slot first, in the queue's
    fair order. Fallbacks take waiters only once the pool has been saturated — requests waiting, every primary
    at its limit — for `spill_after_s` without a break, or while no primary is available. The saturation ends
    when the queue empties: new requests then go to the primaries again. (A request's own wait in this queue
    is no measure of it: the engine admits only about twice the pool's limit in tasks, and the rest of the
    backlog waits as ready tasks.) A failed member gets nothing; the pool fails only when every member has.
    """

    def __init__(self, alias: str, members: list[Member], spill_after_s: float, clock: Clock):
        self.alias = alias
        self.members = members
        self.spill_after_s = spill_after_s
        self.queue: FairQueue[str, Waiter] = FairQueue()
        self.saturated_since: float | None = None  # since when requests have waited with no break
        self.spill_timer = Wakeup(clock)
        self.has_fallback = any(m.fallback for m in members)
        self.label = POOL_QUEUE_PREFIX + alias  # the key its queue's events name
        self._by_state = {id(m.state): m for m in members}

    def member(self, state: EndpointState) -> Member:
        return self._by_state[id(state)]

    # ------------------------------------------------------------ the waiter queue

    def push(self, waiter: Waiter, *, weight: float, retry: bool) -> None:
        # Within its group a retry waits ahead of first attempts, as on a single endpoint.
        self.queue.push(waiter.group, waiter, weight=weight, priority=0 if retry else 1)
        if self.saturated_since is None:
            self.saturated_since = waiter.queued_at

    def take(self, selection: Selection[str, Waiter]) -> Waiter:
        waiter = self.queue.commit(selection)
        self._emptied()
        return waiter

    def remove(self, waiter: Waiter) -> bool:
        removed = self.queue.remove(waiter)
        self._emptied()
        return removed

    def clear(self) -> list[Waiter]:
        waiters = self.queue.clear()
        self._emptied()
        return waiters

    def _emptied(self) -> None:
        if not self.queue:
            self.saturated_since = None

    # ------------------------------------------------------------ routing

    def failure(self) -> BaseException | None:
        """The error of the last member to fail once every member has failed for good, else None."""
        errors = [m.state.failed for m in self.members]
        return errors[-1] if all(e is not None for e in errors) else None

    def primaries_unavailable(self) -> bool:
        return not any(m.available for m in self.members if not m.fallback)

    def route(self, fits: Callable[[Member], bool], in_flight: InFlight) -> Member | None:
        """The member a new request goes to when nobody waits, or None when none has room for it."""
        spill = self.primaries_unavailable()
        best, best_score = None, (float("inf"), float("inf"))
        for member in self.members:
            state = member.state
            if state.failed is not None or (member.fallback and not spill) or state.queue or not fits(member):
                continue
            score = (in_flight(state.key) / max(1, state.limit.limit), state.latency_s)
            if score < best_score:
                best, best_score = member, score
        return best

    def by_headroom(self, in_flight: InFlight) -> list[Member]:
        """Members most headroom first: the order in which they are offered newly queued waiters."""
        live = [m for m in self.members if m.state.failed is None]
        return sorted(live, key=lambda m: (m.fallback, in_flight(m.state.key) / max(1, m.state.limit.limit)))

    def pick(self, member: Member, now: float) -> Selection[str, Waiter] | None:
        """The waiter `member` should take next (its selection, to `take` once admitted), or None when it may
        take none. Two-phase like the fair queue's own: the controller checks the waiter's rate budget first."""
        if member.state.failed is not None:
            return None
        if member.fallback and not self.primaries_unavailable():
            due = self.spill_due()
            if due is None or now < due:
                return None
        return self.queue.select_next()

    def spill_due(self) -> float | None:
        """When fallbacks may take waiters (None: no fallback, or nobody waits)."""
        since = self.saturated_since if self.has_fallback else None
        return None if since is None else since + self.spill_after_s

    def in_flight(self, in_flight: InFlight) -> int:
        return sum(in_flight(m.state.key) for m in self.members)

    def capacity(self) -> int:
        """Requests the pool may have in flight now: the limits of its members that are not failed or down (or
        of every live member while all of them are down, so the run keeps tasks ready for their return)."""
        live = [m for m in self.members if m.state.failed is None]
        up = [m for m in live if not m.state.health.down] or live
        return max(1, sum(_member_limit(m) for m in up))


def _member_limit(member: Member) -> int:
    ceiling = member.state.alias_ceiling(member.alias)
    limit = member.state.limit.limit
    return limit if ceiling is None else min(ceiling, limit)
