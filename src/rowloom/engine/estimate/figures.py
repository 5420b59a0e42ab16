"""The figures of an estimate: ranges (`Span`), per column, per endpoint and in total, and their JSON form.

Values only: how they are measured belongs to `rowloom.engine.estimate.passes`, how they print to the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Standard errors on each side of the mean that a measured range spans (about 95% for a normal mean).
STANDARD_ERRORS = 2.0


@dataclass(frozen=True, slots=True)
class Span:
    """A range `[low, high]`; `expected` is the point estimate when there is one (a measured mean), else None."""

    low: float
    high: float
    expected: float | None = None

    @classmethod
    def exact(cls, value: float) -> Span:
        return cls(value, value, value)

    @classmethod
    def of_rows(cls, per_row: Sequence[float], records: int) -> Span:
        """`records` rows' total from a sample of per-row values: `records` × the mean, ± `STANDARD_ERRORS`
        standard errors of the mean (no spread is known from one row)."""
        count = len(per_row)
        mean = sum(per_row) / count
        if count < 2:
            return cls(mean * records, mean * records, mean * records)
        variance = sum((x - mean) ** 2 for x in per_row) / (count - 1)
        margin = STANDARD_ERRORS * math.sqrt(variance / count)
        return cls(max(0.0, mean - margin) * records, (mean + margin) * records, mean * records)

    def scaled(self, factor: float) -> Span:
        expected = None if self.expected is None else self.expected * factor
        return Span(self.low * factor, self.high * factor, expected)

    def __add__(self, other: Span) -> Span:
        expected = None if self.expected is None or other.expected is None else self.expected + other.expected
        return Span(self.low + other.low, self.high + other.high, expected)

    @property
    def point(self) -> float:
        """The expected value, else the middle of the range."""
        return self.expected if self.expected is not None else (self.low + self.high) / 2

    def to_dict(self, digits: int = 0) -> dict[str, float | None]:
        def rounded(value: float | None) -> float | None:
            if value is None:
                return None
            return round(value) if digits == 0 else round(value, digits)

        return {"low": rounded(self.low), "expected": rounded(self.expected), "high": rounded(self.high)}


ZERO = Span(0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Usage:
    """Requests, tokens and cost of some requests, each a range (`cost` None without prices)."""

    requests: Span
    prompt_tokens: Span
    completion_tokens: Span
    cost: Span | None

    @property
    def total_tokens(self) -> Span:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests.to_dict(),
            "prompt_tokens": self.prompt_tokens.to_dict(),
            "completion_tokens": self.completion_tokens.to_dict(),
            "total_tokens": self.total_tokens.to_dict(),
            "cost": None if self.cost is None else self.cost.to_dict(6),
        }


@dataclass(frozen=True, slots=True)
class ColumnEstimate:
    """One LLM column: the dry figures (prompts rendered, worst-case completions) and, after a sample, the
    measured ones. `completion_basis` says what the dry completion stands for."""

    column: str
    model: str | None
    counted_by: str
    dry: Usage
    completion_basis: str
    measured: Usage | None = None

    @property
    def best(self) -> Usage:
        """The measured figures when a sample ran, else the dry ones."""
        return self.measured or self.dry

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "model": self.model,
            "prompt_tokens_counted_by": self.counted_by,
            "completion_basis": self.completion_basis,
            "dry": self.dry.to_dict(),
            "measured": None if self.measured is None else self.measured.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class EndpointEstimate:
    """One endpoint: its requests, its concurrency (configured ceiling; learned limit after a sample) and, after a
    sample, its mean latency and the wall time its requests take at that concurrency."""

    endpoint: str
    requests: Span
    concurrency_configured: int | None
    concurrency_learned: int | None = None
    mean_latency_s: float | None = None
    wall_s: Span | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests.to_dict(),
            "concurrency_configured": self.concurrency_configured,
            "concurrency_learned": self.concurrency_learned,
            "mean_latency_s": None if self.mean_latency_s is None else round(self.mean_latency_s, 4),
            "wall_s": None if self.wall_s is None else self.wall_s.to_dict(1),
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """What `records` rows of a config will take: per column, per endpoint and in total."""

    records: int
    rows_rendered: int
    sample_rows: int
    columns: list[ColumnEstimate]
    total_dry: Usage
    total_measured: Usage | None
    currency: str | None  # None: some model in use has no prices, so costs are left out
    endpoints: list[EndpointEstimate]
    counted_by: dict[str, str]  # model alias -> how its prompts were counted
    wall_s: Span | None = None
    bottleneck: str | None = None
    sample_rows_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Usage:
        """The measured totals when a sample ran, else the dry ones."""
        return self.total_measured or self.total_dry

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document."""
        return {
            "records": self.records,
            "rows_rendered": self.rows_rendered,
            "sample_rows": self.sample_rows,
            "sample_rows_dropped": self.sample_rows_dropped,
            "currency": self.currency,
            "prompt_tokens_counted_by": dict(self.counted_by),
            "columns": [c.to_dict() for c in self.columns],
            "total": {
                "dry": self.total_dry.to_dict(),
                "measured": None if self.total_measured is None else self.total_measured.to_dict(),
            },
            "endpoints": [e.to_dict() for e in self.endpoints],
            "wall_s": None if self.wall_s is None else self.wall_s.to_dict(1),
            "bottleneck": self.bottleneck,
            "notes": list(self.notes),
        }
