"""Request leases and the ledger that makes their release exactly-once in effect.

Owns which leases are live per resource key (the one source of in-flight counts, kept in a `LeaseBook`), the
per-alias counts and the in-flight integrals; it must not touch limits, queues or cooldowns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rowloom.concurrency.leases import LeaseBook, ReleaseStatus
from rowloom.models.admission.keys import ResourceKey


@dataclass(frozen=True, slots=True)
class RequestLease:
    """Permission for one request attempt to be in flight against `key`.

    `epoch` is the limit epoch at admission: overload signals from leases older than the last cut are the
    same congestion event and do not cut again. `tokens` is what was reserved against a tpm budget;
    `in_flight_at_start` counts the key's live leases right after this one was issued, and `load_mark` is
    the key's in-flight integral then (see `LeaseLedger.mean_load`).
    """

    id: int
    key: ResourceKey
    generation: int
    epoch: int
    acquired_at: float
    tokens: int = 0
    group: str = "default"
    alias: str | None = None
    in_flight_at_start: int = 1
    load_mark: float = 0.0


class LeaseLedger:
    """Live leases per key; release is idempotent in effect and every non-release is classified."""

    def __init__(self, *, memory: int = 1024):
        self._book: LeaseBook[ResourceKey, RequestLease] = LeaseBook(memory=memory)
        self._per_alias: Counter[tuple[ResourceKey, str | None]] = Counter()  # index over the live leases
        self._load: dict[ResourceKey, tuple[float, float]] = {}  # key -> (in-flight integral, as of when)

    @property
    def generation(self) -> int:
        return self._book.generation

    def issue(
        self, key: ResourceKey, *, epoch: int, now: float, tokens: int, group: str, alias: str | None
    ) -> RequestLease:
        """Record and return a new live lease."""
        book = self._book
        mark = self._integral(key, now)
        lease = RequestLease(
            book.next_id(), key, book.generation, epoch, now, tokens, group, alias, book.in_flight(key) + 1, mark
        )
        book.add(key, lease)
        self._per_alias[(key, alias)] += 1
        return lease

    def settle(self, lease: RequestLease, now: float) -> ReleaseStatus:
        """Retire `lease` if it is live; otherwise say why nothing changed."""
        self._integral(lease.key, now)  # brought up to now while the lease still counts
        status = self._book.settle(lease.key, lease)
        if status is ReleaseStatus.RELEASED:
            self._per_alias[(lease.key, lease.alias)] -= 1
        return status

    def _integral(self, key: ResourceKey, now: float) -> float:
        """The integral of the key's in-flight count over time, brought up to `now`."""
        integral, stamp = self._load.get(key, (0.0, now))
        integral += self._book.in_flight(key) * max(0.0, now - stamp)
        self._load[key] = (integral, max(stamp, now))
        return integral

    def mean_load(self, lease: RequestLease, now: float) -> float | None:
        """Requests in flight on the lease's key, averaged over the time the lease has been live (itself
        included): the load its request was served under. None for a lease not live or no time elapsed."""
        if now <= lease.acquired_at or not self._book.is_live(lease.key, lease):
            return None
        return (self._integral(lease.key, now) - lease.load_mark) / (now - lease.acquired_at)

    def in_flight(self, key: ResourceKey) -> int:
        """Live leases on `key`."""
        return self._book.in_flight(key)

    def alias_in_flight(self, key: ResourceKey, alias: str | None) -> int:
        """Live leases on `key` taken through `alias`."""
        return self._per_alias[(key, alias)]

    def live(self, key: ResourceKey) -> list[RequestLease]:
        """A copy of the live leases on `key`."""
        return self._book.live(key)

    def recently_released(self) -> list[int]:
        """Ids of the most recently released leases, oldest first (bounded; for diagnostics)."""
        return self._book.recently_released()

    def reset(self) -> None:
        """Forget every live lease and start a new generation: older leases now release as STALE."""
        self._book.reset()
        self._per_alias.clear()
        self._load.clear()
