"""Skip conditions around any generator: `skip_when` per row, skips propagated from inputs, nulls for the rest.

A skipped cell is `SKIPPED` (written as null, counted per column) and never reaches the wrapped generator, so
no model request is sent for it. `skip_when` holds unless it renders to false, 0, none or an empty value.
Skips propagate downstream by default; the downstream column decides, with `propagate_skip` (true: skip when a
value it reads was skipped; false: read it as null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rowloom.config.templates import compile_template, expression_source
from rowloom.engine.generators.base import BatchContext, CellFailed, FailedCell, Generator
from rowloom.engine.generators.render import render
from rowloom.engine.plan import ColumnPlan, Plan
from rowloom.engine.skips import SKIPPED, unskip, unskip_row

#: What a rendered `skip_when` reads as "do not skip" (Jinja renders booleans as True/False, None as None).
_FALSE = frozenset({"", "false", "0", "0.0", "none", "no", "[]", "{}"})


def skippable_columns(plan: Plan) -> set[str]:
    """Columns whose cells may be skipped: a `skip_when`, or propagation from a skippable input."""
    skippable: set[str] = set()
    for column in plan.columns:  # dependency order: inputs are decided first
        if column.column.skip_when or (
            column.column.propagate_skip and any(c in skippable for c in column.input_columns)
        ):
            skippable.add(column.name)
    return skippable


def needs_skip_handling(column: ColumnPlan, skippable: set[str]) -> bool:
    """Whether the column has a skip condition or reads a column that may be skipped."""
    return bool(column.column.skip_when) or any(c in skippable for c in column.input_columns)


class SkipAware(Generator):
    """Evaluates the skip condition and propagation; the wrapped generator sees only its own references."""

    def __init__(self, plan: ColumnPlan, inner: Generator):
        super().__init__(plan)
        self.inner = inner
        column = plan.column
        self.references: Sequence[str] = tuple(sorted(column.references()))
        self.propagate = column.propagate_skip
        self.condition = compile_template(expression_source(column.skip_when)) if column.skip_when else None

    def skips(self, row: Mapping[str, Any]) -> bool:
        """Whether this row's cell is skipped."""
        if self.propagate and any(row.get(name) is SKIPPED for name in self.references):
            return True
        if self.condition is None:
            return False
        return render(self.condition, unskip_row(row), self.name).strip().lower() not in _FALSE

    async def cell(self, row: Mapping[str, Any]) -> Any:
        if self.skips(row):
            return SKIPPED
        return await self.inner.cell({name: unskip(row[name]) for name in self.references})

    async def batch(self, ctx: BatchContext) -> list[Any]:
        names = tuple(ctx.inputs)
        skipped, failed = set(), {}
        for r in ctx.live_rows:
            try:
                if self.skips({name: ctx.inputs[name][r] for name in names}):
                    skipped.add(r)
            except CellFailed as exc:  # the condition raised on this row's values: the row is dropped
                failed[r] = FailedCell(exc.reason, exc.detail)
        inner_ctx = BatchContext(
            spec=ctx.spec,
            rng=ctx.rng,
            inputs={name: [unskip(v) for v in ctx.inputs[name]] for name in self.references},
            live_rows=[r for r in ctx.live_rows if r not in skipped and r not in failed],
        )
        values = list(await self.inner.batch(inner_ctx))
        for row in skipped:
            values[row] = SKIPPED
        for row, cell in failed.items():
            values[row] = cell
        return values
