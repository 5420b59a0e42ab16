"""Request leases and the ledger that makes their release exactly-once in effect.

Owns which leases are live per resource key (the one source of in-flight counts) and the recent-release
memory; it must not touch limits, queues or cooldowns.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter, OrderedDict
from dataclasses import dataclass

from rowloom.models.admission.keys import ResourceKey

_GENERATIONS = itertools.count(1)


class ReleaseStatus(enum.StrEnum):
    """What a release did: only RELEASED changed any accounting."""

    RELEASED = "released"
    DUPLICATE = "duplicate"  # this lease was already released
    UNKNOWN = "unknown"  # never issued by this controller generation
    STALE = "stale"  # issued by an older generation (before a reset)


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
        self.generation = next(_GENERATIONS)
        self._ids = itertools.count(1)
        self._live: dict[ResourceKey, dict[int, RequestLease]] = {}
        self._per_alias: Counter[tuple[ResourceKey, str | None]] = Counter()  # index over _live
        self._recent: OrderedDict[int, ResourceKey] = OrderedDict()
        self._memory = memory
        self._load: dict[ResourceKey, tuple[float, float]] = {}  # key -> (in-flight integral, as of when)

    def issue(
        self, key: ResourceKey, *, epoch: int, now: float, tokens: int, group: str, alias: str | None
    ) -> RequestLease:
        """Record and return a new live lease."""
        mark = self._integral(key, now)
        live = self._live.setdefault(key, {})
        lease = RequestLease(
            next(self._ids), key, self.generation, epoch, now, tokens, group, alias, len(live) + 1, mark
        )
        live[lease.id] = lease
        self._per_alias[(key, alias)] += 1
        return lease

    def settle(self, lease: RequestLease, now: float) -> ReleaseStatus:
        """Retire `lease` if it is live; otherwise say why nothing changed."""
        if lease.generation != self.generation:
            return ReleaseStatus.STALE if lease.generation < self.generation else ReleaseStatus.UNKNOWN
        live = self._live.get(lease.key)
        if live is not None and live.get(lease.id) is lease:  # identity: the very lease issued, not an equal copy
            self._integral(lease.key, now)
            del live[lease.id]
            self._per_alias[(lease.key, lease.alias)] -= 1
            self._recent[lease.id] = lease.key
            if len(self._recent) > self._memory:
                self._recent.popitem(last=False)
            return ReleaseStatus.RELEASED
        return ReleaseStatus.DUPLICATE if lease.id in self._recent else ReleaseStatus.UNKNOWN

    def _integral(self, key: ResourceKey, now: float) -> float:
        """The integral of the key's in-flight count over time, brought up to `now`."""
        integral, stamp = self._load.get(key, (0.0, now))
        integral += self.in_flight(key) * max(0.0, now - stamp)
        self._load[key] = (integral, max(stamp, now))
        return integral

    def mean_load(self, lease: RequestLease, now: float) -> float | None:
        """Requests in flight on the lease's key, averaged over the time the lease has been live (itself
        included): the load its request was served under. None for a lease not live or no time elapsed."""
        live = self._live.get(lease.key)
        if live is None or lease.id not in live or now <= lease.acquired_at:
            return None
        return (self._integral(lease.key, now) - lease.load_mark) / (now - lease.acquired_at)

    def in_flight(self, key: ResourceKey) -> int:
        """Live leases on `key`."""
        live = self._live.get(key)
        return len(live) if live else 0

    def alias_in_flight(self, key: ResourceKey, alias: str | None) -> int:
        """Live leases on `key` taken through `alias`."""
        return self._per_alias[(key, alias)]

    def live(self, key: ResourceKey) -> list[RequestLease]:
        """A copy of the live leases on `key`."""
        return list(self._live.get(key, {}).values())

    def recently_released(self) -> list[int]:
        """Ids of the most recently released leases, oldest first (bounded; for diagnostics)."""
        return list(self._recent)

    def reset(self) -> None:
        """Forget every live lease and start a new generation: older leases now release as STALE."""
        self.generation = next(_GENERATIONS)
        self._live.clear()
        self._per_alias.clear()
        self._recent.clear()
        self._load.clear()
