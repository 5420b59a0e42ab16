"""The ready queue: tasks whose inputs are done, fair-queued by task group (column, model resource).

Within a group older row groups go first, so row groups complete, checkpoint and free memory early.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rowloom.concurrency.fair_queue import FairQueue, Selection
from rowloom.engine.completion import Task

_NONE: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TaskGroup:
    """Tasks of one column against one resource pool."""

    column: str
    pool: str
    weight: float
    #: `column@pool`, made once: read over a dozen times per task (a new string each time was rehashed each time)
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.column}@{self.pool}")


@dataclass(frozen=True, slots=True)
class QueuedTask:
    task: Task
    group: TaskGroup
    queued_at: float


class ReadyQueue:
    """Weighted fair queue over task groups with a two-phase take (select, then commit)."""

    def __init__(self) -> None:
        self._queue: FairQueue = FairQueue()
        self._groups: dict[str, TaskGroup] = {}
        self._depth: Counter[str] = Counter()  # group key -> queued tasks
        self._pool_depth: Counter[str] = Counter()
        # pool -> its groups with queued work and their weights, kept as tasks come and go: read on every
        # eligibility check, so it is never rebuilt from all groups (that made dispatch quadratic in groups)
        self._waiting: dict[str, dict[str, float]] = {}

    def push(self, task: Task, group: TaskGroup, now: float) -> None:
        self._groups[group.key] = group
        self._depth[group.key] += 1
        self._pool_depth[group.pool] += 1
        self._waiting.setdefault(group.pool, {})[group.key] = group.weight
        priority = (task.row_group, -1 if task.row is None else task.row)
        self._queue.push(group.key, QueuedTask(task, group, now), weight=group.weight, priority=priority)

    def select(self, eligible: Callable[[TaskGroup], bool]) -> Selection[str, QueuedTask] | None:
        """The fair next task among eligible groups, still queued (None when none is eligible).

        Nothing changes until `commit`: the caller admits the task first, while its group still counts as
        waiting, and leaves it queued if admission refuses."""
        return self._queue.select_next(lambda key: eligible(self._groups[key]))

    def commit(self, selection: Selection[str, QueuedTask]) -> QueuedTask:
        """Dequeue a selected task (`StaleSelection` if the queue changed since it was selected)."""
        item: QueuedTask = self._queue.commit(selection)
        group = item.group
        self._depth[group.key] -= 1
        self._pool_depth[group.pool] -= 1
        if self._depth[group.key] == 0:
            del self._waiting[group.pool][group.key]
        return item

    def waiting(self, pool: str) -> Mapping[str, float]:
        """Groups with queued work on `pool`, with their weights (a live view: read it, do not keep it)."""
        return self._waiting.get(pool, _NONE)

    def pools(self) -> list[str]:
        """Pools with queued tasks."""
        return [pool for pool, depth in self._pool_depth.items() if depth]

    def depth(self, pool: str | None = None) -> int:
        """Queued tasks, on one pool or in total."""
        return self._pool_depth[pool] if pool is not None else len(self._queue)

    def groups(self) -> list[TaskGroup]:
        return list(self._groups.values())

    def __len__(self) -> int:
        return len(self._queue)
