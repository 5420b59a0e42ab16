"""Expression columns: a sandboxed Jinja expression rendered per live row and coerced to the column dtype.

What an expression renders is data (often a model's reply): a value that does not coerce to the dtype (`abc`
or `1.0e999` for an int) drops its row as `not_<dtype>`, read through `read_reply`, and a value the expression
cannot compute with (`{{ 100 / (answer|int) }}` on a reply of `0`) drops it as `expression_error`; neither fails
the run. The template itself stays the config's: a sandbox escape or an undefined name still fails the run.
"""

from __future__ import annotations

from typing import Any

from rowloom.config.columns import ExpressionColumn
from rowloom.config.templates import compile_template, expression_source
from rowloom.engine.generators.base import BatchContext, CellFailed, FailedCell, Generator
from rowloom.engine.generators.render import render
from rowloom.engine.generators.replies import read_reply
from rowloom.engine.generators.values import coerce

#: Why a row is dropped when its expression raised on the row's values (ZeroDivisionError, TypeError, …).
EXPRESSION_ERROR = "expression_error"


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
            try:  # a value the expression cannot compute with drops the row (the template's own faults are fatal)
                text = render(template, values, self.name, reason=EXPRESSION_ERROR).strip()
                out[row] = read_reply(
                    "the rendered value", coerce, text, column.dtype, self.name, reason=f"not_{column.dtype}"
                )
            except CellFailed as failed:
                out[row] = FailedCell(failed.reason, failed.detail)
        return out
