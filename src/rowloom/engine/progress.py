"""Live counters of a run, shared by the scheduler (rows) and the progress display and summary (readers)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunProgress:
    """Rows written and dropped so far; request outcomes come from the request stats."""

    records_total: int = 0
    records_resumed: int = 0
    records_written: int = 0
    rows_dropped: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)
    row_groups_total: int = 0
    row_groups_written: int = 0
    started_at: float = field(default_factory=time.monotonic)
    active_tasks: int = 0
    row_groups_in_flight: int = 0

    def begin(self, *, records_total: int, row_groups_total: int, records_resumed: int) -> None:
        """The run starts now (a display may have created this earlier, before servers were started)."""
        self.records_total, self.row_groups_total = records_total, row_groups_total
        self.records_resumed = records_resumed
        self.started_at = time.monotonic()

    @property
    def rows_finished(self) -> int:
        """Rows written or dropped in this run (resumed rows not counted)."""
        return self.records_written + self.rows_dropped

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def rows_per_s(self) -> float:
        elapsed = self.elapsed_s
        return self.rows_finished / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds to go at the current rate, None before any row finished."""
        rate = self.rows_per_s
        remaining = self.records_total - self.records_resumed - self.rows_finished
        return remaining / rate if rate > 0 else None
