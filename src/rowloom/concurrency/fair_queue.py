"""One generic weighted fair queue (start-time fair queueing over groups) with a two-phase take.

Owns queued items, per-group virtual-time tags and weights. It knows nothing of requests, tasks or capacity:
callers say which groups are eligible and decide whether to commit what was selected.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

G = TypeVar("G", bound=Hashable)
T = TypeVar("T")


class StaleSelection(LookupError):
    """`commit` got a selection made before the queue last changed; nothing was dequeued — select again."""


@dataclass(eq=False, slots=True)
class _Entry:
    item: Any
    group: Any
    cost: float


@dataclass(eq=False, slots=True)
class _Group:
    start: float  # virtual start tag of the group's head item
    arrival: int  # when the group last became backlogged: tie-break between equal tags
    heap: list[tuple[Any, _Entry]] = field(default_factory=list)
    dead: set[int] = field(default_factory=set)  # id() of removed entries still in the heap
    count: int = 0


class Selection(NamedTuple, Generic[G, T]):
    """What `select_next` would serve; valid for `commit` only while `version` is the queue's version. A named
    tuple: one is made for every task and every queued request selected, and a tuple is built in C."""

    group: G
    item: T
    start_tag: float
    version: int
    entry: _Entry


class FairQueue(Generic[G, T]):
    """Weighted start-time fair queueing across groups; FIFO (or by item priority) within a group.

    Each backlogged group carries the virtual start tag of its head item. `select_next` picks the eligible
    group with the smallest tag (ties: the group backlogged longest) without changing anything; `commit`
    dequeues it, advances virtual time to that tag and moves the group's tag on by `cost / weight`. A group
    that goes idle and returns starts at `max(virtual time, its last finish)`: no credit for idle time and no
    jumping ahead of its share. Within a group, items pushed with a `priority` are served smallest first
    (ties FIFO); give a priority to every item of a group or to none. Selection scans the backlogged groups
    (O(groups)); push, commit and remove are O(log items in the group).
    """

    def __init__(self, *, default_weight: float = 1.0):
        if default_weight <= 0:
            raise ValueError("default_weight must be positive")
        self._default_weight = default_weight
        self._weights: dict[G, float] = {}
        self._backlogged: dict[G, _Group] = {}
        self._idle_finish: dict[G, float] = {}
        self._where: dict[int, list[_Entry]] = {}  # id(item) -> its entries (the same object may be queued twice)
        self._len = 0
        self._vtime = 0.0
        self._version = 0
        self._seq = itertools.count()
        self._arrivals = itertools.count()

    # ------------------------------------------------------------ mutation

    def push(self, group: G, item: T, *, weight: float | None = None, priority: Any = None, cost: float = 1.0) -> None:
        """Queue `item` in `group`. `weight` (if given) becomes the group's weight; `cost` is its service size."""
        if cost <= 0:
            raise ValueError("cost must be positive")
        if weight is not None:
            self._set_weight(group, weight)
        state = self._backlogged.get(group)
        if state is None:
            finish = self._idle_finish.pop(group, self._vtime)
            state = _Group(start=max(self._vtime, finish), arrival=next(self._arrivals))
            self._backlogged[group] = state
        seq = next(self._seq)
        entry = _Entry(item, group, cost)
        heapq.heappush(state.heap, ((seq,) if priority is None else (priority, seq), entry))
        state.count += 1
        self._where.setdefault(id(item), []).append(entry)
        self._len += 1
        self._version += 1

    def select_next(self, eligible: Callable[[G], bool] | None = None) -> Selection[G, T] | None:
        """The item fairness says goes next among groups `eligible` accepts; changes nothing (None if none)."""
        best_group: Any = None
        best: _Group | None = None
        for group, state in self._backlogged.items():
            if best is not None and (state.start, state.arrival) >= (best.start, best.arrival):
                continue
            if eligible is not None and not eligible(group):
                continue
            best_group, best = group, state
        if best is None:
            return None
        entry = best.heap[0][1]
        return Selection(best_group, entry.item, best.start, self._version, entry)

    def commit(self, selection: Selection[G, T]) -> T:
        """Dequeue the selected item. Raises `StaleSelection` if the queue changed since it was selected."""
        if selection.version != self._version:
            raise StaleSelection("the fair queue changed since this selection; call select_next again")
        state = self._backlogged[selection.group]
        _, entry = heapq.heappop(state.heap)
        self._forget(entry)
        state.count -= 1
        self._vtime = max(self._vtime, state.start)
        finish = state.start + entry.cost / self.weight(selection.group)
        if state.count:
            self._drop_dead_heads(state)
            # max(): a group that sat ineligible while time moved on banks no credit for it
            state.start = max(self._vtime, finish)
        else:
            self._go_idle(selection.group, finish)
        self._version += 1
        return entry.item

    def pop_next(self, eligible: Callable[[G], bool] | None = None) -> T | None:
        """`select_next` and `commit` in one step."""
        selection = self.select_next(eligible)
        return None if selection is None else self.commit(selection)

    def remove(self, item: T) -> bool:
        """Take `item` out (e.g. a cancelled waiter) without charging its group; False if it is not queued."""
        entries = self._where.get(id(item))
        if not entries:
            return False
        entry = entries[-1]
        self._forget(entry)
        state = self._backlogged[entry.group]
        state.count -= 1
        if state.count == 0:
            self._go_idle(entry.group, state.start)  # unserved: its tag stays where it was
        else:
            state.dead.add(id(entry))
            self._drop_dead_heads(state)
        self._version += 1
        return True

    def set_weight(self, group: G, weight: float) -> None:
        """Change a group's weight; it applies from the group's next service."""
        self._set_weight(group, weight)
        self._version += 1

    def clear(self) -> list[T]:
        """Remove every item; returns them (in no particular order)."""
        items = list(self.items())
        for group, state in list(self._backlogged.items()):
            self._go_idle(group, state.start)
        self._where.clear()
        self._len = 0
        self._version += 1
        return items

    # ------------------------------------------------------------ inspection

    @property
    def version(self) -> int:
        """Bumped by every change; a selection is only committable at the version it was made."""
        return self._version

    @property
    def virtual_time(self) -> float:
        """The start tag of the most recently served item (never decreases)."""
        return self._vtime

    def weight(self, group: G) -> float:
        """The group's weight (the default for a group never given one)."""
        return self._weights.get(group, self._default_weight)

    def group_len(self, group: G) -> int:
        """Items queued in `group`."""
        state = self._backlogged.get(group)
        return state.count if state else 0

    def group_lengths(self) -> dict[G, int]:
        """Queued items per non-empty group."""
        return {group: state.count for group, state in self._backlogged.items()}

    def items(self) -> Iterator[T]:
        """Every queued item, in no particular order."""
        return (entry.item for entries in list(self._where.values()) for entry in entries)

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __contains__(self, item: object) -> bool:
        return id(item) in self._where

    # ------------------------------------------------------------ internals

    def _forget(self, entry: _Entry) -> None:
        entries = self._where[id(entry.item)]
        entries.remove(entry)
        if not entries:
            del self._where[id(entry.item)]
        self._len -= 1

    def _set_weight(self, group: G, weight: float) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be positive, got {weight!r}")
        self._weights[group] = float(weight)

    def _go_idle(self, group: G, finish: float) -> None:
        del self._backlogged[group]
        self._idle_finish[group] = finish
        if len(self._idle_finish) > 64 + 2 * len(self._backlogged):
            # a tag at or below virtual time carries no information: max(vtime, tag) == vtime on return
            self._idle_finish = {g: f for g, f in self._idle_finish.items() if f > self._vtime}

    @staticmethod
    def _drop_dead_heads(state: _Group) -> None:
        heap = state.heap
        while heap and id(heap[0][1]) in state.dead:
            state.dead.discard(id(heapq.heappop(heap)[1]))
