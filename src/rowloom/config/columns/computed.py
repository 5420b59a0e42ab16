"""Columns computed locally: sandboxed Jinja expressions, custom Python callables and validation columns."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rowloom.config.columns.base import ColumnBase, DType, check_template
from rowloom.config.columns.model_columns import CodeValidation, check_language
from rowloom.config.templates import expression_source, template_references


class ExpressionColumn(ColumnBase):
    """A value computed by a Jinja expression over the row, coerced to `dtype`."""

    type: Literal["expression"]
    expr: str = Field(min_length=1, description="Jinja expression or template, e.g. `price * qty`.")
    dtype: DType = "string"

    @field_validator("expr")
    @classmethod
    def _compiles(cls, value: str) -> str:
        check_template(expression_source(value))
        return value

    def references(self) -> frozenset[str]:
        return template_references(expression_source(self.expr))


def _check_import_path(value: Any) -> Any:
    """A `function` given as text must be an import path 'package.module:function'."""
    if isinstance(value, str) and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
        raise ValueError(f"{value!r} is not an import path; write 'package.module:function'")
    return value


class CustomColumn(ColumnBase):
    """A user Python callable: per cell `f(row: dict) -> value` or per batch `f(df) -> sequence`."""

    type: Literal["custom"]
    function: str | Callable[..., Any] = Field(description="A callable, or an import path 'package.module:function'.")
    inputs: list[str] = Field(default_factory=list, description="Columns the function reads.")
    mode: Literal["cell", "batch"] = "cell"
    dtype: DType = "string"

    _import_path = field_validator("function")(_check_import_path)

    def references(self) -> frozenset[str]:
        return frozenset(self.inputs)

    @property
    def is_cell(self) -> bool:
        return self.mode == "cell"


class ValidationColumn(ColumnBase):
    """`{valid: bool, errors: str}` per row, from a user callable or a code validator over another column.

    A callable receives the row (its `inputs`) and returns a bool, `(bool, message)`, a list of error strings
    (empty = valid) or `{valid, errors}`. It runs in a worker (thread or process) bounded by `timeout_s`; a
    validator that raises or times out is counted, and recorded as invalid (`on_error: record`) or drops the
    row (`on_error: drop`).
    """

    type: Literal["validation"]
    function: str | Callable[..., Any] | None = Field(
        None, description="A callable, or an import path 'package.module:function'."
    )
    inputs: list[str] = Field(default_factory=list, description="Columns the function reads.")
    language: str | None = Field(None, description="Validate the code in `target` instead: python, sql or json.")
    target: str | None = Field(None, description="Column holding the code (with `language`).")
    validation: CodeValidation = Field(default_factory=CodeValidation)
    timeout_s: float = Field(10.0, gt=0, le=3600, description="Longest one call may run; past it, a timeout.")
    isolation: Literal["thread", "process"] = Field(
        "thread",
        description="Run user code in a daemon thread, or in a child process that is killed on timeout.",
    )
    on_error: Literal["record", "drop"] = Field(
        "record", description="A raising or timing-out validator: record {valid: false, errors} or drop the row."
    )
    drop_invalid: bool = Field(False, description="Drop rows the validator finds invalid (counted as drops).")

    per_cell: ClassVar[bool] = True

    _import_path = field_validator("function")(_check_import_path)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else check_language(value, validated=True)

    @model_validator(mode="after")
    def _one_kind(self) -> ValidationColumn:
        if (self.function is None) == (self.language is None):
            raise ValueError(
                "give either `function` (a user validator) or `language` + `target` (a code validator), not both"
            )
        if self.language is not None and not self.target:
            raise ValueError(f"language: {self.language} needs `target`: the column whose code to validate")
        if self.language is None and self.target is not None:
            raise ValueError("`target` is for code validators; give `language` too, or use `inputs` with `function`")
        if (
            self.isolation == "process"
            and callable(self.function)
            and getattr(self.function, "__name__", "") == ("<lambda>")
        ):
            raise ValueError("isolation: process needs a picklable function; a lambda is not (use a module function)")
        return self

    def references(self) -> frozenset[str]:
        if self.target is not None:
            return frozenset({self.target})
        return frozenset(self.inputs)
