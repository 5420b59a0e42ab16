"""Which cells are done or dropped in a row group, and which tasks became ready as a result (the ready set).

Owns the values of an admitted row group until it is checkpointed; knows nothing of admission or I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rowloom.engine.generators.base import FailedCell
from rowloom.engine.plan import ColumnPlan, Plan, RowGroupSpec
from rowloom.engine.skips import SKIPPED


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a cell (`row` set) or a whole column of a row group (`row` is None)."""

    row_group: int
    column: str
    row: int | None = None

    @property
    def id(self) -> str:
        """A readable id, unique within a run."""
        return f"{self.row_group}:{self.column}" + ("" if self.row is None else f":{self.row}")


class RowGroupState:
    """Values and readiness of one admitted row group.

    Every `mark_*` call returns the tasks that became ready because of it, so readiness is pushed, never scanned.
    Values are kept per output name; a column with companion outputs delivers a dict per row, and a skipped
    cell (`SKIPPED`) fills every output of its column. `on_row_done` is called once per row, the moment its
    last cell has a value (a dropped row is never done), so progress counts rows long before the row group
    is complete.
    """

    def __init__(self, plan: Plan, spec: RowGroupSpec, on_row_done: Callable[[], None] | None = None):
        self.plan = plan
        self.spec = spec
        n = spec.count
        self.rows_done = 0
        self._on_row_done = on_row_done
        self._columns_left = [len(plan.columns)] * n  # per row: columns that have not delivered its value
        self.values: dict[str, list[Any]] = {out: [None] * n for c in plan.columns for out in c.outputs}
        self.dropped: dict[int, str] = {}
        self._done: dict[str, bytearray] = {c.name: bytearray(n) for c in plan.columns if c.per_cell}
        self._batch_done: set[str] = set()
        # Per cell column, per row: inputs not yet available. Per batch column: input columns not yet complete.
        self._missing: dict[str, list[int]] = {c.name: [len(c.input_columns)] * n for c in plan.columns if c.per_cell}
        self._missing_columns: dict[str, int] = {c.name: len(c.input_columns) for c in plan.columns if not c.per_cell}
        # Live rows a column still owes; a column is complete at zero.
        self._remaining: dict[str, int] = {c.name: n for c in plan.columns}
        self._complete_columns: set[str] = set()

    # ------------------------------------------------------------ queries

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def complete(self) -> bool:
        """Every column has a value for every live row."""
        return len(self._complete_columns) == len(self.plan.columns)

    @property
    def live_rows(self) -> list[int]:
        """Local row indices that are not dropped."""
        return [r for r in range(self.spec.count) if r not in self.dropped]

    def row_values(self, row: int, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The values of one row (all columns, or only `names`)."""
        cols = names if names is not None else tuple(self.values)
        return {name: self.values[name][row] for name in cols}

    def column_values(self, names: tuple[str, ...]) -> Mapping[str, list[Any]]:
        """Whole columns of this row group (dropped rows hold None)."""
        return {name: self.values[name] for name in names}

    def is_dropped(self, row: int | None) -> bool:
        return row is not None and row in self.dropped

    def skipped_counts(self) -> dict[str, int]:
        """Per column, the live rows whose cell was skipped (columns with none are left out)."""
        live = self.live_rows
        counts = {}
        for column in self.plan.columns:
            values = self.values[column.outputs[0]]
            skipped = sum(1 for r in live if values[r] is SKIPPED)
            if skipped:
                counts[column.name] = skipped
        return counts

    # ------------------------------------------------------------ transitions

    def initial_tasks(self) -> list[Task]:
        """Tasks with no inputs: ready as soon as the row group is admitted."""
        ready: list[Task] = []
        for column in self.plan.columns:
            if column.input_columns:
                continue
            if column.per_cell:
                ready += [Task(self.index, column.name, r) for r in range(self.spec.count)]
            else:
                ready.append(Task(self.index, column.name))
        return ready

    def mark_cell_done(self, column: str, row: int, value: Any) -> list[Task]:
        """Store a cell's value; return the tasks it made ready. A result for a dropped row is ignored."""
        if row in self.dropped:
            return []
        done = self._done[column]
        if done[row]:
            raise RuntimeError(f"cell {column}[{row}] of row group {self.index} completed twice")
        done[row] = 1
        plan = self.plan.column(column)
        self._store(plan, row, value)
        self._column_delivered(row)
        ready = self._row_input_done(plan, row)
        self._remaining[column] -= 1
        return ready + self._maybe_column_complete(column)

    def mark_batch_done(self, column: str, values: list[Any]) -> list[Task]:
        """Store a whole column (one value per row, None for dropped rows); return the tasks it made ready."""
        if len(values) != self.spec.count:
            raise RuntimeError(f"column {column} produced {len(values)} values for {self.spec.count} rows")
        if column in self._batch_done:
            raise RuntimeError(f"column {column} of row group {self.index} completed twice")
        self._batch_done.add(column)
        plan = self.plan.column(column)
        if plan.multi_output:
            for row, value in enumerate(values):
                self._store(plan, row, value)
        else:
            self.values[column] = [None if isinstance(v, FailedCell) else v for v in values]
        ready: list[Task] = []
        for row in self.live_rows:
            self._column_delivered(row)
            ready += self._row_input_done(plan, row)
        self._remaining[column] = 0
        return ready + self._maybe_column_complete(column)

    def drop_row(self, row: int, reason: str) -> list[Task]:
        """Drop a row: its pending cells no longer count; return batch tasks that it unblocked."""
        if row in self.dropped:
            return []
        self.dropped[row] = reason
        ready: list[Task] = []
        for column in self.plan.columns:
            if column.per_cell and not self._done[column.name][row]:
                self._remaining[column.name] -= 1
                ready += self._maybe_column_complete(column.name)
        return ready

    # ------------------------------------------------------------ internals

    def _column_delivered(self, row: int) -> None:
        self._columns_left[row] -= 1
        if self._columns_left[row] == 0:
            self.rows_done += 1
            if self._on_row_done is not None:
                self._on_row_done()

    def _store(self, plan: ColumnPlan, row: int, value: Any) -> None:
        if value is SKIPPED:
            for out in plan.outputs:
                self.values[out][row] = SKIPPED
        elif not plan.multi_output:
            self.values[plan.name][row] = value
        elif isinstance(value, dict):
            for out in plan.outputs:
                self.values[out][row] = value.get(out)
        elif value is not None and not isinstance(value, FailedCell):
            raise RuntimeError(f"column {plan.name} writes {plan.outputs}; its generator must return a dict per row")

    def _row_input_done(self, column: ColumnPlan, row: int) -> list[Task]:
        ready = []
        for name in column.dependents:
            dep = self.plan.column(name)
            if not dep.per_cell:
                continue
            missing = self._missing[name]
            missing[row] -= 1
            if missing[row] == 0:
                ready.append(Task(self.index, name, row))
        return ready

    def _maybe_column_complete(self, column: str) -> list[Task]:
        if self._remaining[column] > 0 or column in self._complete_columns:
            return []
        plan = self.plan.column(column)
        if not plan.per_cell and column not in self._batch_done:
            return []  # a batch column completes only when it has run, even with every row dropped
        self._complete_columns.add(column)
        ready = []
        for name in plan.dependents:
            if self.plan.column(name).per_cell:
                continue
            self._missing_columns[name] -= 1
            if self._missing_columns[name] == 0:
                ready.append(Task(self.index, name))
        return ready
