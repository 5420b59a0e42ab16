"""Column declarations: samplers, LLM columns, expressions, custom Python, code, validation and embedding columns.

Each column knows its own references (the columns it reads), the values it writes (`outputs`), its skip
condition and its scheduling metadata; no engine logic here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.scheduling import ResourceClass, SchedulingMetadata
from rowloom.config.schema_refs import unresolvable_ref
from rowloom.config.templates import compile_template, expression_source, template_references
from rowloom.errors import TemplateError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT64 = 2**63  # integer samplers write int64 columns
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
        if not _NAME.match(value):
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
            if not math.isfinite(sum(self.weights)):
                raise ValueError("weights are too large to add up; scale them down (only their ratios matter)")
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
        if self.integer and not (self.low >= -_INT64 and self.high < _INT64):
            raise ValueError(f"integer bounds must lie within ±{_INT64:.3g} (64-bit integers); narrow the range")
        if not math.isfinite(self.high - self.low):
            raise ValueError("high - low is too large to sample from; narrow the range")
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
        if self.integer:  # every draw (40 standard deviations out, or the clip bounds) must fit in 64 bits
            lowest = self.low if self.low is not None else self.mean - 40 * self.stddev
            highest = self.high if self.high is not None else self.mean + 40 * self.stddev
            if not (lowest >= -_INT64 and highest < _INT64):
                raise ValueError(
                    f"integer draws could leave ±{_INT64:.3g} (64-bit integers); lower mean/stddev or set low and high"
                )
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
        bad_ref = unresolvable_ref(value)
        if bad_ref is not None:
            raise ValueError(f"invalid JSON Schema: {bad_ref}")
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


# ---------------------------------------------------------------- code, validation and embedding columns

#: Languages an `llm_code` column may declare; only those in `VALIDATED_LANGUAGES` can be validated.
CODE_LANGUAGES: tuple[str, ...] = (
    "python",
    "sql",
    "json",
    "javascript",
    "typescript",
    "java",
    "go",
    "rust",
    "c",
    "cpp",
    "csharp",
    "bash",
    "yaml",
    "html",
    "css",
)
VALIDATED_LANGUAGES: tuple[str, ...] = ("python", "sql", "json")
#: Ruff rules that mean "this snippet is broken" (syntax, undefined names), not style.
DEFAULT_RUFF_RULES: tuple[str, ...] = ("E9", "F63", "F7", "F82")


def _check_language(value: str, *, validated: bool) -> str:
    lowered = value.strip().lower()
    known = VALIDATED_LANGUAGES if validated else CODE_LANGUAGES
    if lowered not in known:
        what = "a validator for" if validated else "the code language"
        raise ValueError(f"rowloom has no {what} {value!r}; use one of: {', '.join(known)}")
    return lowered


class CodeValidation(ConfigModel):
    """How code is checked: Python by `compile()` then `ruff`, SQL by `sqlglot`, JSON by `json.loads`."""

    sql_dialect: str | None = Field(None, description="sqlglot dialect for SQL (e.g. postgres, duckdb); unset = ANSI.")
    ruff_rules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RUFF_RULES),
        description="Ruff rules a Python snippet must pass (when ruff is installed); [] = compile() only.",
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="Longest a validator may run on one snippet.")

    @field_validator("sql_dialect")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        if value is not None:
            import sqlglot

            try:
                sqlglot.Dialect.get_or_raise(value)
            except ValueError:
                known = ", ".join(sorted(d.value for d in sqlglot.Dialects if d.value))
                raise ValueError(f"sqlglot has no SQL dialect {value!r}; use one of: {known}") from None
        return value


class LLMCodeColumn(LLMColumnBase):
    """Code from the model: extracted from a fenced block (or the raw reply), optionally validated.

    With `validate: true` the column also writes `<name>__valid` (bool) and `<name>__errors` (string).
    """

    type: Literal["llm_code"]
    language: str = Field(description=f"Language of the code: {', '.join(CODE_LANGUAGES)}.")
    validate_code: bool = Field(False, alias="validate", description="Check the code and write __valid/__errors.")
    validation: CodeValidation = Field(default_factory=CodeValidation)
    max_correction_attempts: int = Field(
        0, ge=0, le=10, description="Re-asks with the validator's errors before keeping invalid code."
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _check_language(value, validated=False)

    @model_validator(mode="after")
    def _validatable(self) -> LLMCodeColumn:
        if self.validate_code and self.language not in VALIDATED_LANGUAGES:
            raise ValueError(
                f"validate: true, but rowloom has no validator for {self.language!r}; "
                f"validated languages: {', '.join(VALIDATED_LANGUAGES)} (or set validate: false)"
            )
        if self.max_correction_attempts and not self.validate_code:
            raise ValueError("max_correction_attempts needs validate: true (corrections quote the validator's errors)")
        return self

    def outputs(self) -> tuple[str, ...]:
        if self.validate_code:
            return (self.name, f"{self.name}__valid", f"{self.name}__errors")
        return (self.name,)


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

    @field_validator("function")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
            raise ValueError(f"{value!r} is not an import path; write 'package.module:function'")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else _check_language(value, validated=True)

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


class EmbeddingColumn(ColumnBase):
    """A `list<float32>` vector per row from the provider's `/v1/embeddings`, batched `batch_size` rows a request."""

    type: Literal["embedding"]
    model: str = Field(description="Alias of a model in `models` (an embedding model).")
    input: str = Field(min_length=1, description="Jinja template of the text to embed; refers to columns by name.")
    batch_size: int = Field(64, ge=1, le=2048, description="Inputs per embeddings request.")

    default_resource: ClassVar[ResourceClass] = ResourceClass.LLM_WAIT

    @field_validator("input")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _check_template(value)
        return value

    def references(self) -> frozenset[str]:
        return template_references(self.input)

    @property
    def model_alias(self) -> str | None:
        return self.model


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
    | CustomColumn
    | LLMCodeColumn
    | ValidationColumn
    | EmbeddingColumn,
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
    "llm_code",
    "validation",
    "embedding",
)


def is_cell_column(column: ColumnBase) -> bool:
    """Whether the column runs one task per row (LLM, per-cell custom) rather than one per row group."""
    if isinstance(column, CustomColumn):
        return column.is_cell
    return column.per_cell
