"""Column declarations: samplers, LLM columns, expressions and custom Python, as one discriminated union.

Each column knows its own references (the columns it reads) and its scheduling metadata; no engine logic here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.scheduling import ResourceClass, SchedulingMetadata
from rowloom.config.templates import compile_template, expression_source, template_references
from rowloom.errors import TemplateError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Scalar = str | int | float | bool


def _check_template(source: str) -> None:
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

    default_resource: ClassVar[ResourceClass] = ResourceClass.CPU
    #: Cell columns run one task per row; batch columns one task per row group.
    per_cell: ClassVar[bool] = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid column name; use letters, digits and underscores "
                "(templates refer to columns by name)"
            )
        return value

    def references(self) -> frozenset[str]:
        """Names of the columns this column reads."""
        return frozenset()

    def scheduling_metadata(self) -> SchedulingMetadata:
        """The declared metadata, or the default for this kind of column."""
        return self.scheduling or SchedulingMetadata(resource_class=self.default_resource)

    @property
    def model_alias(self) -> str | None:
        """The model alias this column calls, if any."""
        return None


# ---------------------------------------------------------------- samplers


class CategorySampler(ColumnBase):
    """Pick one of `values`, uniformly or by `weights`."""

    type: Literal["category"]
    values: list[Scalar] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _weights(self) -> CategorySampler:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}; "
                    "give one weight per value"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative and sum to more than 0")
        return self


class SubcategorySampler(ColumnBase):
    """Pick a value from the list keyed by the row's value of a parent `category` column."""

    type: Literal["subcategory"]
    category: str = Field(description="Name of the parent column whose value selects the list.")
    values: dict[str, list[Scalar]] = Field(description="Parent value -> candidate values.")

    @field_validator("values")
    @classmethod
    def _non_empty(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        empty = [k for k, v in value.items() if not v]
        if not value or empty:
            raise ValueError(f"every parent value needs at least one candidate (empty: {empty or 'all'})")
        return value

    def references(self) -> frozenset[str]:
        return frozenset({self.category})


class UniformSampler(ColumnBase):
    """A uniform number in [low, high] (inclusive for integers)."""

    type: Literal["uniform"]
    low: float
    high: float
    integer: bool = False

    @model_validator(mode="after")
    def _range(self) -> UniformSampler:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low}); swap them")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("integer sampling needs whole-number low and high")
        return self


class GaussianSampler(ColumnBase):
    """A normal draw with `mean` and `stddev`, optionally rounded to an integer or clipped."""

    type: Literal["gaussian"]
    mean: float = 0.0
    stddev: float = Field(1.0, ge=0)
    integer: bool = False
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _clip(self) -> GaussianSampler:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low}); swap them")
        return self


class BernoulliSampler(ColumnBase):
    """True with probability `p`."""

    type: Literal["bernoulli"]
    p: float = Field(0.5, ge=0, le=1)


class UUIDSampler(ColumnBase):
    """A random (seeded) UUID4 string."""

    type: Literal["uuid"]


class DatetimeSampler(ColumnBase):
    """A uniform timestamp between `start` and `end`, truncated to `unit`."""

    type: Literal["datetime"]
    start: dt.datetime
    end: dt.datetime
    unit: Literal["s", "m", "h", "D"] = "s"

    @model_validator(mode="after")
    def _range(self) -> DatetimeSampler:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end must be naive (no timezone); timestamps are written as UTC")
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


# ---------------------------------------------------------------- LLM columns


class LLMColumnBase(ColumnBase):
    """A column whose value comes from a chat-completion request rendered from a Jinja prompt."""

    model: str = Field(description="Alias of a model in `models`.")
    prompt: str = Field(min_length=1, description="Jinja template; refers to other columns by name.")
    system_prompt: str | None = Field(None, description="Optional Jinja system prompt.")

    default_resource: ClassVar[ResourceClass] = ResourceClass.LLM_WAIT
    per_cell: ClassVar[bool] = True

    @field_validator("prompt", "system_prompt")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _check_template(value)
        return value

    def references(self) -> frozenset[str]:
        refs = template_references(self.prompt)
        if self.system_prompt:
            refs |= template_references(self.system_prompt)
        return refs

    @property
    def model_alias(self) -> str | None:
        return self.model


class LLMTextColumn(LLMColumnBase):
    """Free text from the model."""

    type: Literal["llm_text"]


def _schema_from(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value.model_json_schema()
    return value


class LLMStructuredColumn(LLMColumnBase):
    """A JSON object valid against `schema` (JSON Schema, or a pydantic model in Python)."""

    type: Literal["llm_structured"]
    output_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the reply.")
    max_correction_attempts: int = Field(
        2, ge=0, le=10, description="Re-asks with the validation error before the row is dropped."
    )

    @field_validator("output_schema", mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        return _schema_from(value)

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
        if value.get("type") not in ("object", None):
            raise ValueError("the schema's top level must be an object (`type: object`)")
        return value


class Rubric(ConfigModel):
    """One judging criterion: integer scores, each with a description."""

    name: str = Field(description="Key of this rubric in the judge's output.")
    description: str = ""
    scores: dict[int, str] = Field(min_length=1, description="Score -> what it means.")

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a valid rubric name; use letters, digits and underscores")
        return value


class LLMJudgeColumn(LLMColumnBase):
    """Scores per rubric with reasons: `{rubric: {score: int, reason: str}}`."""

    type: Literal["llm_judge"]
    rubrics: list[Rubric] = Field(min_length=1)
    max_correction_attempts: int = Field(2, ge=0, le=10)

    @model_validator(mode="after")
    def _unique(self) -> LLMJudgeColumn:
        names = [r.name for r in self.rubrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rubric names must be unique (repeated: {', '.join(dupes)})")
        return self

    @property
    def output_schema(self) -> dict[str, Any]:
        """The JSON Schema the judge's reply must satisfy."""
        return {
            "type": "object",
            "properties": {
                r.name: {
                    "type": "object",
                    "properties": {
                        "score": {"type": "integer", "enum": sorted(r.scores)},
                        "reason": {"type": "string"},
                    },
                    "required": ["score", "reason"],
                    "additionalProperties": False,
                }
                for r in self.rubrics
            },
            "required": [r.name for r in self.rubrics],
            "additionalProperties": False,
        }


# ---------------------------------------------------------------- computed columns

DType = Literal["string", "int", "float", "bool", "json"]


class ExpressionColumn(ColumnBase):
    """A value computed by a Jinja expression over the row, coerced to `dtype`."""

    type: Literal["expression"]
    expr: str = Field(min_length=1, description="Jinja expression or template, e.g. `price * qty`.")
    dtype: DType = "string"

    @field_validator("expr")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _check_template(expression_source(value))
        return value

    def references(self) -> frozenset[str]:
        return template_references(expression_source(self.expr))


class CustomColumn(ColumnBase):
    """A user Python callable: per cell `f(row: dict) -> value` or per batch `f(df) -> sequence`."""

    type: Literal["custom"]
    function: str | Callable[..., Any] = Field(description="A callable, or an import path 'package.module:function'.")
    inputs: list[str] = Field(default_factory=list, description="Columns the function reads.")
    mode: Literal["cell", "batch"] = "cell"
    dtype: DType = "string"

    @field_validator("function")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
            raise ValueError(f"{value!r} is not an import path; write 'package.module:function'")
        return value

    def references(self) -> frozenset[str]:
        return frozenset(self.inputs)

    @property
    def is_cell(self) -> bool:
        return self.mode == "cell"


ColumnConfig = Annotated[
    CategorySampler
    | SubcategorySampler
    | UniformSampler
    | GaussianSampler
    | BernoulliSampler
    | UUIDSampler
    | DatetimeSampler
    | LLMTextColumn
    | LLMStructuredColumn
    | LLMJudgeColumn
    | ExpressionColumn
    | CustomColumn,
    Field(discriminator="type"),
]

COLUMN_TYPES: tuple[str, ...] = (
    "category",
    "subcategory",
    "uniform",
    "gaussian",
    "bernoulli",
    "uuid",
    "datetime",
    "llm_text",
    "llm_structured",
    "llm_judge",
    "expression",
    "custom",
)


def is_cell_column(column: ColumnBase) -> bool:
    """Whether the column runs one task per row (LLM, per-cell custom) rather than one per row group."""
    if isinstance(column, CustomColumn):
        return column.is_cell
    return column.per_cell
