"""Task admission: leases on local resource pools (model-wait slots per endpoint, CPU, I/O) with policies.

Owns pool accounting and lease generations only; which task runs next is the ready queue's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.concurrency.leases import LeaseBook, ReleaseStatus


class Policy(StrEnum):
    """How groups that share a pool divide it while more than one of them has work waiting."""

    STRICT_FAIR = "strict_fair"  # no group above its weighted share while a peer waits
    BOUNDED_BORROW = "bounded_borrow"  # borrow idle share up to a bound, repay before borrowing again


@dataclass(frozen=True, slots=True)
class TaskLease:
    """Permission for one task to hold `pool`; released exactly once (in effect)."""

    id: int
    pool: str
    group: str
    generation: int
    acquired_at: float
    borrowed: bool = False


class TaskAdmissionController:
    """Grants and takes back task leases; duplicate, unknown and stale releases change nothing.

    Borrowing debt is kept **per group**: a group that borrowed `borrow_bound` slots beyond its share may not
    borrow again until every borrowed lease of that group is back (its debt is zero).
    """

    def __init__(
        self,
        *,
        policy: Policy = Policy.BOUNDED_BORROW,
        borrow_bound: int = 4,
        clock: Clock = SYSTEM_CLOCK,
        released_history: int = 1024,
    ):
        self.policy = Policy(policy)
        self.borrow_bound = borrow_bound
        self.clock = clock
        self._book: LeaseBook[str, TaskLease] = LeaseBook(memory=released_history)
        self._pools: dict[str, Callable[[], int]] = {}  # pool -> its capacity now
        self._held: dict[tuple[str, str], int] = {}  # (pool, group) -> leases held
        self._debt: dict[str, int] = {}  # group -> borrowed leases outstanding
        self._repaying: set[str] = set()
        self._read: dict[str, int] | None = None  # pool -> its capacity, read once in a pass of decisions

    @property
    def generation(self) -> int:
        """Stamped on every lease; leases of an earlier generation of this controller release as STALE."""
        return self._book.generation

    # ------------------------------------------------------------ pools

    def add_pool(self, name: str, capacity: int | Callable[[], int]) -> None:
        """Declare a pool; `capacity` may be a callable re-read on each decision (adaptive limits)."""
        cap = capacity if callable(capacity) else (lambda c=capacity: c)
        self._pools[name] = cap

    def capacity(self, pool: str) -> int:
        """Current capacity of a pool (at least 1); within `decisions()`, as first read in it."""
        read = self._read
        if read is None:
            return max(1, int(self._pools[pool]()))
        capacity = read.get(pool)
        if capacity is None:
            capacity = read[pool] = max(1, int(self._pools[pool]()))
        return capacity

    @contextmanager
    def decisions(self) -> Iterator[None]:
        """A pass of decisions that nothing interrupts (no await within it): each pool's capacity is read once
        in it. An adaptive pool's capacity is a walk through request admission, and a dispatch pass asked it
        four times per task it admitted; nothing the pass does (taking leases, starting tasks that run later)
        changes a capacity. Nested passes share the outermost's reads."""
        if self._read is not None:
            yield
            return
        self._read = {}
        try:
            yield
        finally:
            self._read = None

    def in_use(self, pool: str) -> int:
        """Leases currently held on a pool."""
        return self._book.in_flight(pool)

    def free(self, pool: str) -> int:
        """Slots free on a pool right now (never negative)."""
        return max(0, self.capacity(pool) - self.in_use(pool))

    def held(self, pool: str, group: str) -> int:
        """Leases a group holds on a pool."""
        return self._held.get((pool, group), 0)

    def debt(self, group: str) -> int:
        """Borrowed leases a group has not yet returned."""
        return self._debt.get(group, 0)

    @property
    def pools(self) -> list[str]:
        return list(self._pools)

    # ------------------------------------------------------------ decisions

    def admissible(self, pool: str, group: str, waiting: Mapping[str, float]) -> tuple[bool, str, bool]:
        """Whether `group` may take a slot of `pool`; `waiting` maps groups with queued work to their weights.

        Pass the view taken while the candidate task is still queued, so `group` is in it with its own weight
        (a group missing from `waiting` is judged at weight 1). Returns (allowed, reason when not, whether the
        slot would be borrowed).
        """
        capacity = self.capacity(pool)  # read once: an adaptive pool's capacity is a walk through request admission
        if capacity - self.in_use(pool) <= 0:
            return False, "pool_full", False
        peers_waiting = len(waiting) > (1 if group in waiting else 0)  # a group other than `group` waits
        if not peers_waiting:
            return True, "", False
        weights = dict(waiting)
        weights.setdefault(group, 1.0)
        share = capacity * weights[group] / (sum(weights.values()) or 1.0)
        within_share = self.held(pool, group) + 1 <= max(1.0, share)
        if within_share:
            return True, "", False
        if self.policy is Policy.STRICT_FAIR:
            return False, "over_share", False
        if group in self._repaying or self.debt(group) >= self.borrow_bound:
            return False, "repaying_debt", False
        return True, "", True

    def try_acquire(self, pool: str, group: str, waiting: Mapping[str, float] | None = None) -> TaskLease | None:
        """A lease when the pool and policy allow, else None (nothing changes)."""
        allowed, _, borrowed = self.admissible(pool, group, waiting or {})
        return self.grant(pool, group, borrowed=borrowed) if allowed else None

    def grant(self, pool: str, group: str, *, borrowed: bool) -> TaskLease:
        """The lease `admissible` just allowed `group`, borrowed as it said, in the same pass of decisions (see
        `decisions`) with nothing granted in between: it is not judged again."""
        lease = TaskLease(self._book.next_id(), pool, group, self._book.generation, self.clock.now(), borrowed)
        self._book.add(pool, lease)
        self._held[(pool, group)] = self.held(pool, group) + 1
        if borrowed:
            self._debt[group] = self.debt(group) + 1
            if self._debt[group] >= self.borrow_bound:
                self._repaying.add(group)
        return lease

    def release(self, lease: TaskLease) -> ReleaseStatus:
        """Return a lease. Only the first release of a live lease of this generation changes accounting."""
        status = self._book.settle(lease.pool, lease)
        if status is not ReleaseStatus.RELEASED:
            return status
        self._held[(lease.pool, lease.group)] -= 1
        if lease.borrowed:
            self._debt[lease.group] -= 1
            if self._debt[lease.group] == 0:
                self._repaying.discard(lease.group)
        return status

    def reset(self) -> None:
        """Forget every lease (new generation): late releases of old leases are reported stale."""
        self._book.reset()
        self._held.clear()
        self._debt.clear()
        self._repaying.clear()

    @property
    def active_leases(self) -> int:
        """Leases currently held across all pools."""
        return len(self._book)

    def recently_released(self) -> list[int]:
        """Ids of the most recently released leases (bounded), for diagnostics."""
        return self._book.recently_released()
