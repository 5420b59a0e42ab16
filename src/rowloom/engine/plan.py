"""The plan: columns in dependency order, which run per cell and which per row group, and the row groups.

A seed, when the config has one, is the first column of the plan: one batch task per row group whose outputs
are the seed's columns. Built once from a `DatasetConfig`; the scheduler and completion tracker read it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rowloom.config.columns import ColumnBase, is_cell_column
from rowloom.config.dag import dependency_problems, producers, topological_order
from rowloom.config.dataset import DatasetConfig
from rowloom.config.scheduling import SchedulingMetadata
from rowloom.config.seed import SeedColumns
from rowloom.errors import ConfigError, ConfigProblem


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """One column as the scheduler sees it."""

    name: str
    column: ColumnBase
    per_cell: bool
    inputs: tuple[str, ...]  # values the column reads (its references and its skip condition's)
    dependents: tuple[str, ...]
    metadata: SchedulingMetadata
    model_alias: str | None
    position: int  # index in dependency order
    column_index: int  # index in the declaration (output order); the seed is -1
    outputs: tuple[str, ...] = ()  # values it writes: its name, plus companions like `<name>__valid`
    input_columns: tuple[str, ...] = ()  # the columns that write `inputs` (what it waits for)

    @property
    def multi_output(self) -> bool:
        """Whether the column writes more than its own value (its results are per-row dicts)."""
        return self.outputs != (self.name,)


@dataclass(frozen=True, slots=True)
class RowGroupSpec:
    """A slice of the dataset: row group `index` covers global rows [start, start + count).

    Samplers draw from stream `stream` (the block of `row_group_size` rows holding `start`), skipping the
    `offset` rows of that block before `start`. A fresh run's row groups are the blocks (stream = index,
    offset 0); a run extended from an unaligned record count has one row group that completes the last short
    one, so every row draws what a fresh run of the larger count draws for it.
    """

    index: int
    start: int
    count: int
    stream: int = -1  # -1: the row group's own index
    offset: int = 0

    def __post_init__(self) -> None:
        if self.stream < 0:
            object.__setattr__(self, "stream", self.index)


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
        """Columns written to the output (seed first, then declaration order, `drop` columns left out)."""
        return sorted((c for c in self.columns if not c.column.drop), key=lambda c: c.column_index)

    @property
    def seed(self) -> ColumnPlan | None:
        """The seed task's column, when the config has a seed."""
        return next((c for c in self.columns if isinstance(c.column, SeedColumns)), None)

    @property
    def model_aliases(self) -> list[str]:
        """Every model alias some column calls."""
        return sorted({c.model_alias for c in self.columns if c.model_alias})


def row_groups(num_records: int, size: int, extended_from: tuple[int, ...] = ()) -> tuple[RowGroupSpec, ...]:
    """Split `num_records` into row groups of `size`, cut at multiples of `size` (the last one may be shorter).

    A run extended from earlier, smaller record counts (`extended_from`) is also cut at each of them: the row
    groups before such a count were written by the earlier run and stay as they are.
    """
    cuts = sorted({*range(0, num_records, size), *(n for n in extended_from if 0 < n < num_records)})
    return tuple(
        RowGroupSpec(index=i, start=start, count=end - start, stream=start // size, offset=start % size)
        for i, (start, end) in enumerate(zip(cuts, [*cuts[1:], num_records], strict=True))
    )


def build_plan(config: DatasetConfig, num_records: int, extended_from: tuple[int, ...] = ()) -> Plan:
    """Order the columns by their dependencies and split the records into row groups (see `row_groups` for
    `extended_from`)."""
    if num_records < 1:
        raise ConfigError(
            ConfigProblem("num_records", f"must be at least 1, got {num_records}", "pass a positive number")
        )
    columns: list[ColumnBase] = list(config.columns)
    declared = {c.name: i for i, c in enumerate(columns)}
    if config.seed is not None:
        seed = SeedColumns.of(config.seed)
        columns.insert(0, seed)  # before everything: every column may read it, it reads nothing
        declared[seed.name] = -1
    problems = dependency_problems(columns)
    if problems:
        raise ConfigError(problems)
    order = topological_order(columns)
    by_name = {c.name: c for c in columns}
    made_by = producers(columns)
    upstream = {name: sorted({made_by[r] for r in by_name[name].dependencies()}, key=order.index) for name in order}
    dependents: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        for producer in upstream[name]:
            dependents[producer].append(name)
    plans = []
    for position, name in enumerate(order):
        column = by_name[name]
        plans.append(
            ColumnPlan(
                name=name,
                column=column,
                per_cell=is_cell_column(column),
                inputs=tuple(sorted(column.dependencies())),
                dependents=tuple(sorted(dependents[name], key=order.index)),
                metadata=column.scheduling_metadata(),
                model_alias=column.model_alias,
                position=position,
                column_index=declared[name],
                outputs=column.outputs(),
                input_columns=tuple(upstream[name]),
            )
        )
    groups = row_groups(num_records, config.run.row_group_size, extended_from)
    return Plan(columns=tuple(plans), row_groups=groups)
