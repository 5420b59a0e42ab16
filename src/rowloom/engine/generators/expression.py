"""Expression columns: a sandboxed Jinja expression rendered per live row and coerced to the column dtype."""

from __future__ import annotations

from typing import Any

from rowloom.config.columns import ExpressionColumn
from rowloom.config.templates import compile_template, expression_source
from rowloom.engine.generators.base import BatchContext, Generator
from rowloom.engine.generators.render import render
from rowloom.engine.generators.values import coerce


class ExpressionGenerator(Generator):
    """Renders the expression for every live row of a row group."""

    async def batch(self, ctx: BatchContext) -> list[Any]:
        column = self.plan.column
        assert isinstance(column, ExpressionColumn)
        template = compile_template(expression_source(column.expr))
        names = tuple(ctx.inputs)
        out: list[Any] = [None] * ctx.spec.count
        for row in ctx.live_rows:
            values = {name: ctx.inputs[name][row] for name in names}
            out[row] = coerce(render(template, values, self.name).strip(), column.dtype, self.name)
        return out
