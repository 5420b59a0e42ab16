"""Scheduler events: job, task and row-group lifecycle, frontier changes, advisory skips, health snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rowloom.observe.events.base import Event, register_event

_EV = {"frozen": True, "kw_only": True, "slots": True}


@register_event
@dataclass(**_EV)
class JobStarted(Event):
    """A run began: its size and shape."""

    kind: ClassVar[str] = "job_started"
    num_records: int = 0
    row_groups: int = 0
    resumed_row_groups: int = 0
    columns: list[str] = field(default_factory=list)
    capacities: dict[str, Any] = field(default_factory=dict)


@register_event
@dataclass(**_EV)
class JobCompleted(Event):
    """A run ended (`status` is completed, aborted or interrupted)."""

    kind: ClassVar[str] = "job_completed"
    status: str = "completed"
    records_written: int = 0
    rows_dropped: int = 0
    wall_s: float = 0.0
    message: str = ""


@register_event
@dataclass(**_EV)
class TaskQueued(Event):
    """A task became ready and entered the fair queue of its group."""

    kind: ClassVar[str] = "task_queued"
    group: str = ""
    pool: str = ""


@register_event
@dataclass(**_EV)
class TaskAdmitted(Event):
    """A task received a lease on its resource pool and started."""

    kind: ClassVar[str] = "task_admitted"
    group: str = ""
    pool: str = ""
    lease: int = 0
    queued_s: float = 0.0


@register_event
@dataclass(**_EV)
class TaskBlocked(Event):
    """The head of a group could not be admitted (reason: pool_full, policy, …). No longer emitted: the scheduler
    takes a lease on the very judgement that found the group eligible, in a pass nothing interrupts, so a lease
    is never refused after it. Kept so that logs written before read back."""

    kind: ClassVar[str] = "task_blocked"
    group: str = ""
    pool: str = ""
    reason: str = ""


@register_event
@dataclass(**_EV)
class TaskReleased(Event):
    """A task finished (outcome: done, dropped, failed, cancelled) and returned its lease."""

    kind: ClassVar[str] = "task_released"
    group: str = ""
    pool: str = ""
    lease: int = 0
    outcome: str = "done"
    reason: str = ""
    run_s: float = 0.0


@register_event
@dataclass(**_EV)
class RowGroupAdmitted(Event):
    """A row group entered the frontier."""

    kind: ClassVar[str] = "row_group_admitted"
    rows: int = 0
    in_flight: int = 0


@register_event
@dataclass(**_EV)
class RowGroupCheckpointed(Event):
    """A row group was written to disk and its memory released."""

    kind: ClassVar[str] = "row_group_checkpointed"
    rows: int = 0
    dropped: int = 0
    file: str = ""
    dropped_rows: list[int] = field(default_factory=list)  # local indices of the dropped rows (for the ledger)


@register_event
@dataclass(**_EV)
class FrontierChanged(Event):
    """The target number of row groups in flight changed."""

    kind: ClassVar[str] = "frontier_changed"
    old: int = 0
    new: int = 0
    reason: str = ""


@register_event
@dataclass(**_EV)
class AdvisorySkip(Event):
    """A task of a pressured endpoint was passed over for one of an open endpoint."""

    kind: ClassVar[str] = "advisory_skip"
    skipped_group: str = ""
    chosen_group: str = ""
    pressured_pool: str = ""


@register_event
@dataclass(**_EV)
class HealthSnapshot(Event):
    """Periodic state of the scheduler: workers, frontier, demand and leases per pool, request pressure."""

    kind: ClassVar[str] = "health_snapshot"
    active_tasks: int = 0
    admitted_rows: int = 0
    row_groups_in_flight: int = 0
    frontier_target: int = 0
    frontier_limited_by: str = ""
    pools: dict[str, Any] = field(default_factory=dict)
    endpoints: dict[str, Any] = field(default_factory=dict)
