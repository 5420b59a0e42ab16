"""What the scheduler drives and what it asks: the checkpointer that takes complete row groups, its view of request
admission, and the task pools that stand for each model's request slots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rowloom.engine.completion import RowGroupState

__all__ = ["Checkpointer", "EndpointView", "PoolReads", "model_pool", "model_slots"]


class Checkpointer(Protocol):
    """Receives complete row groups (Parquet writer for runs, in-memory collector for previews)."""

    def write(self, state: RowGroupState) -> str:
        """Persist a complete row group; return where it went (file name or a label)."""
        ...


class EndpointView(Protocol):
    """What task admission needs to know about request admission: each model's current limit, whether its
    endpoint is saturated (requests queued, or cooling down), cooling down, or down (probed while its requests
    wait), and how many of its requests sleep before a retry."""

    def capacity(self, alias: str) -> int: ...

    def saturated(self, alias: str) -> bool: ...

    def cooling(self, alias: str) -> bool: ...

    def down(self, alias: str) -> bool: ...

    def backing_off(self, alias: str) -> int: ...


def model_pool(alias: str) -> str:
    """The task pool of model-wait slots for one model alias."""
    return f"model:{alias}"


def model_slots(limit: int) -> int:
    """Task slots for a model: twice its request limit (plus two).

    The surplus waits in request admission, so a freed request slot never waits for a task, and the adaptive
    limit sees the demand it needs to grow (slow start doubles the limit each round trip only if that many
    requests are waiting)."""
    return 2 * limit + 2


class PoolReads(dict[str, bool]):
    """One question about the task pools (room, saturation), each pool read once per selection and remembered:
    nothing awaits during a selection, so no answer changes under it, and the dozens of groups of a wide fan-out
    are not each judged against a full pool again. A dict that reads what it lacks (`pool_reads[pool]`): a
    `functools.cache` made per selection cost more to build than the reads it saved."""

    __slots__ = ("_read",)

    def __init__(self, read: Callable[[str], bool]):
        super().__init__()
        self._read = read

    def __missing__(self, pool: str) -> bool:
        answer = self[pool] = self._read(pool)
        return answer
