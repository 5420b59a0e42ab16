"""One generator per column kind; `build_generators` picks the right one for each planned column."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rowloom.config.columns import (
    CustomColumn,
    ExpressionColumn,
    LLMColumnBase,
)
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.generators.base import BatchContext, CellFailed, DropRow, Generator, rng_for
from rowloom.engine.plan import Plan

if TYPE_CHECKING:
    from rowloom.models.executor import ModelRequestExecutor

__all__ = ["BatchContext", "CellFailed", "DropRow", "Generator", "build_generators", "rng_for"]


def build_generators(config: DatasetConfig, plan: Plan, executor: ModelRequestExecutor | None) -> dict[str, Generator]:
    """A generator for every column of the plan."""
    from rowloom.engine.generators.custom import CustomGenerator
    from rowloom.engine.generators.expression import ExpressionGenerator
    from rowloom.engine.generators.llm import LLMGenerator
    from rowloom.engine.generators.samplers import SamplerGenerator

    out: dict[str, Generator] = {}
    for column in plan.columns:
        if isinstance(column.column, LLMColumnBase):
            if executor is None:
                raise ValueError("LLM columns need a request executor")
            out[column.name] = LLMGenerator(column, executor, config.model(column.column.model))
        elif isinstance(column.column, ExpressionColumn):
            out[column.name] = ExpressionGenerator(column)
        elif isinstance(column.column, CustomColumn):
            out[column.name] = CustomGenerator(column)
        else:
            out[column.name] = SamplerGenerator(column)
    return out
