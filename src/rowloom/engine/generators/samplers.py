"""Sampler columns: seeded, vectorised draws per row group (category, subcategory, uniform, gaussian, …).

Draws depend only on (seed, column, row), so a resumed or extended run reproduces every value: a row group draws
from its stream (see `RowGroupSpec`) from the first row of that stream, and keeps the draws from its own rows on.
Every numpy draw used here is sequential (the first k of n draws are the k draws), which is what makes a row
group that starts inside a stream get the values a whole stream would give its rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np

from rowloom.config.columns import (
    BernoulliSampler,
    CategorySampler,
    DatetimeSampler,
    GaussianSampler,
    SubcategorySampler,
    UniformSampler,
    UUIDSampler,
)
from rowloom.engine.generators.base import BatchContext, Generator
from rowloom.errors import ConfigError, ConfigProblem

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "D": 86400}


class SamplerGenerator(Generator):
    """Dispatches on the sampler type; each draw is one numpy call for the whole row group."""

    async def batch(self, ctx: BatchContext) -> list[Any]:
        column = self.plan.column
        if isinstance(column, SubcategorySampler):
            return self._subcategory(column, ctx)
        skip = ctx.spec.offset  # the stream's rows before this row group: drawn, then left out
        return self._draw(column, skip + ctx.spec.count, ctx.rng)[skip:]

    def _draw(self, column: Any, n: int, rng: np.random.Generator) -> list[Any]:
        if isinstance(column, CategorySampler):
            p = None
            if column.weights is not None:
                w = np.asarray(column.weights, dtype=float)
                p = w / w.sum()
            picks = rng.choice(len(column.values), size=n, p=p)
            return [column.values[i] for i in picks]
        if isinstance(column, UniformSampler):
            if column.integer:
                return [int(v) for v in rng.integers(int(column.low), int(column.high) + 1, size=n)]
            return [float(v) for v in rng.uniform(column.low, column.high, size=n)]
        if isinstance(column, GaussianSampler):
            draws = rng.normal(column.mean, column.stddev, size=n)
            if column.low is not None or column.high is not None:
                draws = np.clip(draws, column.low, column.high)
            return [int(v) for v in np.rint(draws)] if column.integer else [float(v) for v in draws]
        if isinstance(column, BernoulliSampler):
            return [bool(v) for v in rng.random(size=n) < column.p]
        if isinstance(column, UUIDSampler):
            raw = rng.bytes(16 * n)
            return [str(uuid.UUID(bytes=raw[i * 16 : i * 16 + 16], version=4)) for i in range(n)]
        if isinstance(column, DatetimeSampler):
            unit = _UNIT_SECONDS[column.unit]
            span = int((column.end - column.start).total_seconds() // unit)
            offsets = rng.integers(0, span + 1, size=n)
            return [column.start + dt.timedelta(seconds=int(o) * unit) for o in offsets]
        raise TypeError(f"no sampler for column type {type(column).__name__}")

    def _subcategory(self, column: SubcategorySampler, ctx: BatchContext) -> list[Any]:
        parents = ctx.inputs[column.category]
        picks = ctx.rng.random(size=ctx.spec.offset + ctx.spec.count)[ctx.spec.offset :]
        out: list[Any] = [None] * ctx.spec.count
        for row in ctx.live_rows:
            key = parents[row]
            candidates = column.values.get(str(key))
            if candidates is None:
                raise ConfigError(
                    ConfigProblem(
                        f"columns ({column.name}).values",
                        f"has no entry for {column.category} = {key!r}",
                        f"add a list for {key!r} under values",
                    )
                )
            out[row] = candidates[int(picks[row] * len(candidates))]
        return out
