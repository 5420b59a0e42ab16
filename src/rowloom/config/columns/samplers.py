"""Sampler columns: seeded draws (category, subcategory, uniform, gaussian, bernoulli, uuid, datetime)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rowloom.config.columns.base import INT64_LIMIT, ColumnBase, Scalar


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
        if self.integer and not (self.low >= -INT64_LIMIT and self.high < INT64_LIMIT):
            raise ValueError(f"integer bounds must lie within ±{INT64_LIMIT:.3g} (64-bit integers); narrow the range")
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
        if self.integer:  # every draw (40 standard deviations out, then clipped) must fit in 64 bits
            lowest, highest = self.mean - 40 * self.stddev, self.mean + 40 * self.stddev
            if self.low is not None:
                lowest, highest = max(lowest, self.low), max(highest, self.low)
            if self.high is not None:
                lowest, highest = min(lowest, self.high), min(highest, self.high)
            if not (lowest >= -INT64_LIMIT and highest < INT64_LIMIT):
                raise ValueError(
                    f"integer draws could leave ±{INT64_LIMIT:.3g} (64-bit integers); "
                    "lower mean/stddev or set low and high"
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
