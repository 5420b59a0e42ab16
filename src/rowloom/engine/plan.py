"""The plan: columns in dependency order, which run per cell and which per row group, and the row groups.

Built once from a `DatasetConfig`; the scheduler and completion tracker read it, nothing mutates it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rowloom.config.columns import ColumnBase, is_cell_column
from rowloom.config.dag import dependency_problems, topological_order
from rowloom.config.dataset import DatasetConfig
from rowloom.config.scheduling import SchedulingMetadata
from rowloom.errors import ConfigError, ConfigProblem


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """One column as the scheduler sees it."""

    name: str
    column: ColumnBase
    per_cell: bool
    inputs: tuple[str, ...]
    dependents: tuple[str, ...]
    metadata: SchedulingMetadata
    model_alias: str | None
    position: int  # index in dependency order
    column_index: int  # index in the declaration (output order)


@dataclass(frozen=True, slots=True)
class RowGroupSpec:
    """A slice of the dataset: row group `index` covers global rows [start, start + count)."""

    index: int
    start: int
    count: int


@dataclass(frozen=True)
class Plan:
    """Columns in dependency order and the row groups of a run of `num_records`."""

    columns: tuple[ColumnPlan, ...]
    row_groups: tuple[RowGroupSpec, ...]

    def column(self, name: str) -> ColumnPlan:
        """The plan of one column."""
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, ColumnPlan]:
        return {c.name: c for c in self.columns}

    @property
    def output_columns(self) -> list[ColumnPlan]:
        """Columns written to the output (declaration order, `drop` columns left out)."""
        return sorted((c for c in self.columns if not c.column.drop), key=lambda c: c.column_index)

    @property
    def model_aliases(self) -> list[str]:
        """Every model alias some column calls."""
        return sorted({c.model_alias for c in self.columns if c.model_alias})


def row_groups(num_records: int, size: int) -> tuple[RowGroupSpec, ...]:
    """Split `num_records` into row groups of `size` (the last one may be shorter)."""
    return tuple(
        RowGroupSpec(index=i, start=start, count=min(size, num_records - start))
        for i, start in enumerate(range(0, num_records, size))
    )


def build_plan(config: DatasetConfig, num_records: int) -> Plan:
    """Order the columns by their dependencies and split the records into row groups."""
    if num_records < 1:
        raise ConfigError(
            ConfigProblem("num_records", f"must be at least 1, got {num_records}", "pass a positive number")
        )
    problems = dependency_problems(config.columns)
    if problems:
        raise ConfigError(problems)
    order = topological_order(config.columns)
    by_name = {c.name: c for c in config.columns}
    declared = {c.name: i for i, c in enumerate(config.columns)}
    dependents: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        for ref in by_name[name].references():
            dependents[ref].append(name)
    plans = []
    for position, name in enumerate(order):
        column = by_name[name]
        plans.append(
            ColumnPlan(
                name=name,
                column=column,
                per_cell=is_cell_column(column),
                inputs=tuple(sorted(column.references())),
                dependents=tuple(sorted(dependents[name], key=order.index)),
                metadata=column.scheduling_metadata(),
                model_alias=column.model_alias,
                position=position,
                column_index=declared[name],
            )
        )
    return Plan(columns=tuple(plans), row_groups=row_groups(num_records, config.run.row_group_size))
