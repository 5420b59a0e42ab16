"""Live counters of a run: the engine writes them (rows as they finish, records as they are written), displays
and the summary read them. Owns no rates or estimates: a reader derives those with its own clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.models.budget import SpendBudget


@dataclass
class RunProgress:
    """Rows done, dropped and written so far; request outcomes come from the request stats.

    A row is done the moment its last cell has a value, and dropped the moment one of its cells fails for good;
    either way it is finished. Done rows reach disk with their whole row group, so `records_written` trails
    `rows_done`, and a run that stops early writes only its complete row groups: what a run ends with is
    `records_written`, never `rows_done`.
    """

    records_total: int = 0
    records_resumed: int = 0
    rows_done: int = 0
    records_written: int = 0
    rows_dropped: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)
    row_groups_total: int = 0
    row_groups_written: int = 0
    clock: Clock = SYSTEM_CLOCK
    started_at: float | None = None
    active_tasks: int = 0
    row_groups_in_flight: int = 0
    # What the runs into the output were charged, and against which budget (a local run sets it when it starts).
    spend: SpendBudget | None = None

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock.now()

    def begin(self, *, records_total: int, row_groups_total: int, records_resumed: int) -> None:
        """The run starts now (a display may have created this earlier, before servers were started)."""
        self.records_total, self.row_groups_total = records_total, row_groups_total
        self.records_resumed = records_resumed
        self.started_at = self.clock.now()

    def row_done(self) -> None:
        """One more row has every cell done (called by the completion tracker as it happens)."""
        self.rows_done += 1

    @property
    def rows_finished(self) -> int:
        """Rows done or dropped in this run (resumed rows not counted)."""
        return self.rows_done + self.rows_dropped

    @property
    def rows_to_go(self) -> int:
        """Rows of the run neither resumed nor finished yet."""
        return max(0, self.records_total - self.records_resumed - self.rows_finished)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run began, on this progress's clock."""
        assert self.started_at is not None  # set in __post_init__
        return self.clock.now() - self.started_at
