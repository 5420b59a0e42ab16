"""Custom Python columns: a user callable per cell (`f(row) -> value`) or per batch (`f(df) -> values`).

Sync callables run in a worker thread so they never block the event loop; any exception other than `DropRow`
is a bug in user code and fails the run with its traceback and the column name.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from rowloom.config.columns import CustomColumn
from rowloom.config.imports import import_function
from rowloom.engine.generators.base import BatchContext, CellFailed, DropRow, Generator
from rowloom.engine.generators.values import coerce
from rowloom.errors import ConfigError, ConfigProblem, UserCodeError


def resolve_callable(column: CustomColumn | Any) -> Callable[..., Any]:
    """The column's function — any column with `name` and `function` (custom, validation) — importing
    'package.module:function' paths with a clear error on failure."""
    if callable(column.function):
        return column.function
    module_name, _, attr = column.function.partition(":")
    try:
        fn = import_function(module_name, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            ConfigProblem(
                f"columns ({column.name}).function",
                f"cannot import {column.function!r}: {exc}",
                "make sure the module is importable (on PYTHONPATH) and defines the function",
            )
        ) from None
    if not callable(fn):
        raise ConfigError(
            ConfigProblem(f"columns ({column.name}).function", f"{column.function!r} is not callable", "")
        )
    return fn


def function_name(function: Any) -> str:
    """How a column's function is shown: its import path, or `module:qualname` of a callable."""
    if isinstance(function, str):
        return function
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"


class CustomGenerator(Generator):
    """Calls the user's function; values are coerced to the declared dtype."""

    def __init__(self, plan):
        super().__init__(plan)
        assert isinstance(plan.column, CustomColumn)
        self.column: CustomColumn = plan.column
        self.fn = resolve_callable(self.column)
        self.is_async = inspect.iscoroutinefunction(self.fn)

    async def _call(self, arg: Any) -> Any:
        try:
            if self.is_async:
                return await self.fn(arg)
            return await asyncio.to_thread(self.fn, arg)
        except DropRow:
            raise
        except Exception as exc:
            raise UserCodeError(
                f"custom column {self.name!r}: {type(exc).__name__}: {exc} (a bug in the column's function; "
                "raise rowloom.DropRow to drop a row on purpose)",
                column=self.name,
                function=function_name(self.column.function),
            ) from exc

    async def cell(self, row: Mapping[str, Any]) -> Any:
        try:
            value = await self._call(dict(row))
        except DropRow as exc:
            raise CellFailed("dropped_by_user", str(exc)) from None
        return coerce(value, self.column.dtype, self.name)

    async def batch(self, ctx: BatchContext) -> list[Any]:
        import pandas as pd  # only batch columns need it: a run without one starts half a second sooner

        frame = pd.DataFrame(
            {name: [values[r] for r in ctx.live_rows] for name, values in ctx.inputs.items()},
            index=ctx.live_rows,
        )
        try:
            result = await self._call(frame)
        except DropRow:
            raise UserCodeError(
                f"custom column {self.name!r}: DropRow is for cell mode; a batch function returns None "
                "for rows it leaves empty"
            ) from None
        values = list(result)
        if len(values) != len(ctx.live_rows):
            raise UserCodeError(
                f"custom column {self.name!r}: batch function returned {len(values)} values for "
                f"{len(ctx.live_rows)} rows; return one value per row of the DataFrame"
            )
        out: list[Any] = [None] * ctx.spec.count
        for row, value in zip(ctx.live_rows, values, strict=True):
            out[row] = coerce(value, self.column.dtype, self.name)
        return out
