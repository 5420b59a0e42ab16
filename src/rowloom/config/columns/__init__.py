"""Column declarations: samplers, model columns (LLM text/structured/judge/code, embeddings), computed columns
(expressions, custom Python, validation) — one discriminated union.

Each column knows its references, the values it writes (`outputs`), its skip condition and its scheduling
metadata; no engine logic here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rowloom.config.columns.base import ColumnBase, DType, Scalar
from rowloom.config.columns.computed import CustomColumn, ExpressionColumn, ValidationColumn
from rowloom.config.columns.model_columns import (
    CODE_LANGUAGES,
    DEFAULT_RUFF_RULES,
    VALIDATED_LANGUAGES,
    CodeValidation,
    EmbeddingColumn,
    LLMCodeColumn,
    LLMColumnBase,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    Rubric,
)
from rowloom.config.columns.samplers import (
    BernoulliSampler,
    CategorySampler,
    DatetimeSampler,
    GaussianSampler,
    SubcategorySampler,
    UniformSampler,
    UUIDSampler,
)

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


__all__ = [
    "CODE_LANGUAGES",
    "COLUMN_TYPES",
    "DEFAULT_RUFF_RULES",
    "VALIDATED_LANGUAGES",
    "BernoulliSampler",
    "CategorySampler",
    "CodeValidation",
    "ColumnBase",
    "ColumnConfig",
    "CustomColumn",
    "DType",
    "DatetimeSampler",
    "EmbeddingColumn",
    "ExpressionColumn",
    "GaussianSampler",
    "LLMCodeColumn",
    "LLMColumnBase",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "Rubric",
    "Scalar",
    "SubcategorySampler",
    "UUIDSampler",
    "UniformSampler",
    "ValidationColumn",
    "is_cell_column",
]
