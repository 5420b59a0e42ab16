"""`LeaseBook`: the leases one controller issued, per key — which are live, and what a release did.

Owns lease ids, generations and the live set; both admission levels (task leases on local pools, request leases
on endpoints) keep their own accounting around it and must not decide here what a lease allows.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

# Process-wide, so a lease another controller issued is never mistaken for one of this book's.
_GENERATIONS = itertools.count(1)


class ReleaseStatus(enum.StrEnum):
    """What a release did: only RELEASED changed any accounting."""

    RELEASED = "released"
    DUPLICATE = "duplicate"  # this lease was already released
    UNKNOWN = "unknown"  # never issued by this book (another controller's, or made up)
    STALE = "stale"  # issued by this book before a reset


class Lease(Protocol):
    """What the book needs of a lease: its id and the generation it was issued in."""

    @property
    def id(self) -> int: ...

    @property
    def generation(self) -> int: ...


K = TypeVar("K", bound=Hashable)
L = TypeVar("L", bound=Lease)


class LeaseBook(Generic[K, L]):
    """Live leases per key, with one rule for releases: only the first release of a live lease of the current
    generation counts; any other is classified and changes nothing. A reset starts a new generation and
    remembers the old ones, so their late releases report STALE while a stranger's report UNKNOWN."""

    def __init__(self, *, memory: int = 1024):
        self.generation = next(_GENERATIONS)
        self._past: set[int] = set()
        self._ids = itertools.count(1)
        self._live: dict[K, dict[int, L]] = {}
        self._count = 0
        self._released: OrderedDict[int, None] = OrderedDict()  # recent releases, for DUPLICATE and diagnostics
        self._memory = memory

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, key: K, lease: L) -> int:
        """Record a lease as live on `key`; returns the key's live count with it."""
        live = self._live.setdefault(key, {})
        live[lease.id] = lease
        self._count += 1
        return len(live)

    def settle(self, key: K, lease: L) -> ReleaseStatus:
        """Retire `lease` from `key` if it is live (the very lease issued, not an equal copy); else say why not."""
        if lease.generation != self.generation:
            return ReleaseStatus.STALE if lease.generation in self._past else ReleaseStatus.UNKNOWN
        if not self.is_live(key, lease):
            return ReleaseStatus.DUPLICATE if lease.id in self._released else ReleaseStatus.UNKNOWN
        del self._live[key][lease.id]
        self._count -= 1
        self._released[lease.id] = None
        if len(self._released) > self._memory:
            self._released.popitem(last=False)
        return ReleaseStatus.RELEASED

    def is_live(self, key: K, lease: L) -> bool:
        """Whether `lease` (this very lease) is live on `key`."""
        live = self._live.get(key)
        return live is not None and live.get(lease.id) is lease

    def in_flight(self, key: K) -> int:
        """Live leases on `key`."""
        live = self._live.get(key)
        return len(live) if live else 0

    def live(self, key: K) -> list[L]:
        """A copy of the live leases on `key`."""
        return list(self._live.get(key, {}).values())

    def __len__(self) -> int:
        """Live leases on every key."""
        return self._count

    def recently_released(self) -> list[int]:
        """Ids of the most recently released leases, oldest first (bounded; for diagnostics)."""
        return list(self._released)

    def reset(self) -> None:
        """Forget every live lease and start a new generation (the release history is kept: it is diagnostics,
        and a late release of an old lease reports STALE before the history is looked at)."""
        self._past.add(self.generation)
        self.generation = next(_GENERATIONS)
        self._live.clear()
        self._count = 0
