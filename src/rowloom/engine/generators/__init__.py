"""One generator per column kind; `build_generators` picks the right one for each planned column."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rowloom.config.columns import (
    CustomColumn,
    EmbeddingColumn,
    ExpressionColumn,
    LLMCodeColumn,
    LLMColumnBase,
    ValidationColumn,
)
from rowloom.config.dataset import DatasetConfig
from rowloom.config.seed import SeedColumns
from rowloom.engine.generators.base import BatchContext, CellFailed, DropRow, FailedCell, Generator, rng_for
from rowloom.engine.plan import Plan

if TYPE_CHECKING:
    from rowloom.engine.seed_reader import SeedReader
    from rowloom.models.executor import ModelRequestExecutor

__all__ = ["BatchContext", "CellFailed", "DropRow", "FailedCell", "Generator", "build_generators", "rng_for"]


def build_generators(
    config: DatasetConfig,
    plan: Plan,
    executor: ModelRequestExecutor | None,
    seed_reader: SeedReader | None = None,
) -> dict[str, Generator]:
    """A generator for every column of the plan (wrapped for skip conditions where a cell may be skipped)."""
    from rowloom.engine.generators.code import CodeGenerator
    from rowloom.engine.generators.custom import CustomGenerator
    from rowloom.engine.generators.embedding import EmbeddingGenerator
    from rowloom.engine.generators.expression import ExpressionGenerator
    from rowloom.engine.generators.llm import LLMGenerator
    from rowloom.engine.generators.samplers import SamplerGenerator
    from rowloom.engine.generators.seed import SeedGenerator
    from rowloom.engine.generators.skip import SkipAware, needs_skip_handling, skippable_columns
    from rowloom.engine.generators.validation import ValidationGenerator

    skippable = skippable_columns(plan)
    out: dict[str, Generator] = {}
    for column in plan.columns:
        if isinstance(column.column, SeedColumns):
            if seed_reader is None:
                raise ValueError("a seeded plan needs a seed reader")
            out[column.name] = SeedGenerator(column, seed_reader)
            continue
        if isinstance(column.column, LLMCodeColumn | EmbeddingColumn):
            if executor is None:
                raise ValueError("model columns need a request executor")
            model = config.model(column.column.model)
            kind = CodeGenerator if isinstance(column.column, LLMCodeColumn) else EmbeddingGenerator
            out[column.name] = kind(column, executor, model)
        elif isinstance(column.column, ValidationColumn):
            out[column.name] = ValidationGenerator(column)
        elif isinstance(column.column, LLMColumnBase):
            if executor is None:
                raise ValueError("LLM columns need a request executor")
            out[column.name] = LLMGenerator(column, executor, config.model(column.column.model))
        elif isinstance(column.column, ExpressionColumn):
            out[column.name] = ExpressionGenerator(column)
        elif isinstance(column.column, CustomColumn):
            out[column.name] = CustomGenerator(column)
        else:
            out[column.name] = SamplerGenerator(column)
        if needs_skip_handling(column, skippable):
            out[column.name] = SkipAware(column, out[column.name])
    return out
