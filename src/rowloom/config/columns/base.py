"""What every column has: name, drop, skip condition, scheduling metadata and references.

Shared by the column kinds in this package; no engine logic here.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from rowloom.config.base import ConfigModel
from rowloom.config.scheduling import ResourceClass, SchedulingMetadata
from rowloom.config.templates import compile_template, expression_source, template_references
from rowloom.errors import TemplateError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INT64_LIMIT = 2**63  # integer samplers write int64 columns
Scalar = str | int | float | bool


def check_template(source: str) -> None:
    try:
        compile_template(source)
    except TemplateError as exc:
        raise ValueError(f"{exc}; fix the template syntax") from None


class ColumnBase(ConfigModel):
    """Fields every column has."""

    name: str = Field(description="Column name; letters, digits and underscores, not starting with a digit.")
    drop: bool = Field(False, description="Compute the column (others may read it) but do not write it.")
    scheduling: SchedulingMetadata | None = Field(
        None, description="Override how the scheduler treats this column's tasks."
    )
    skip_when: str | None = Field(
        None,
        description="Sandboxed Jinja expression over the row; when true the cell is null and nothing is generated.",
    )
    propagate_skip: bool = Field(
        True,
        description="When a column this one reads was skipped, skip this cell too (false: see the null instead).",
    )

    default_resource: ClassVar[ResourceClass] = ResourceClass.CPU
    #: Cell columns run one task per row; batch columns one task per row group.
    per_cell: ClassVar[bool] = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid column name; use letters, digits and underscores "
                "(templates refer to columns by name)"
            )
        return value

    @field_validator("skip_when")
    @classmethod
    def _skip_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("skip_when is empty; give an expression such as `text | length < 20`, or remove it")
            try:
                compile_template(expression_source(value))
            except TemplateError as exc:
                raise ValueError(f"{exc}; skip_when must be a Jinja expression such as `text | length < 20`") from None
        return value

    def references(self) -> frozenset[str]:
        """Names of the values this column reads to compute its own."""
        return frozenset()

    def skip_references(self) -> frozenset[str]:
        """Names the `skip_when` expression reads."""
        return template_references(expression_source(self.skip_when)) if self.skip_when else frozenset()

    def dependencies(self) -> frozenset[str]:
        """Everything this column needs before it can run: its references and its skip condition's."""
        return self.references() | self.skip_references()

    def outputs(self) -> tuple[str, ...]:
        """Names of the values this column writes (itself, plus companions such as `<name>__valid`)."""
        return (self.name,)

    def scheduling_metadata(self) -> SchedulingMetadata:
        """The declared metadata, or the default for this kind of column."""
        return self.scheduling or SchedulingMetadata(resource_class=self.default_resource)

    @property
    def model_alias(self) -> str | None:
        """The model alias this column calls, if any."""
        return None


DType = Literal["string", "int", "float", "bool", "json"]
