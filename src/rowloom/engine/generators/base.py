"""What every column generator is: a cell generator (one row in, one value out) or a batch generator.

Also the ways a cell can end without a value: `CellFailed` (a counted drop), `DropRow` (user's choice), and in
a batch, `FailedCell` in place of one row's value (that row is dropped and counted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rowloom.engine.plan import ColumnPlan, RowGroupSpec
from rowloom.errors import RowloomError


class CellFailed(RowloomError):
    """A cell could not be produced after every retry; its row is dropped and counted under `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FailedCell:
    """A batch generator's value for a row that failed for good: the row is dropped and counted under `reason`."""

    reason: str
    detail: str = ""


class DropRow(Exception):
    """Raise from a custom column to drop the current row on purpose (counted as `dropped_by_user`)."""


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a batch generator sees: its row group, a seeded RNG, and its input columns (None for dropped rows)."""

    spec: RowGroupSpec
    rng: np.random.Generator
    inputs: Mapping[str, list[Any]]
    live_rows: list[int]


class Generator:
    """Produces one column's values. Subclasses override `cell` (per-row columns) or `batch`."""

    def __init__(self, plan: ColumnPlan):
        self.plan = plan

    @property
    def name(self) -> str:
        return self.plan.name

    async def cell(self, row: Mapping[str, Any]) -> Any:
        """The value of this column for one row, given the row's input values."""
        raise NotImplementedError(f"{type(self).__name__} is a batch generator")

    async def batch(self, ctx: BatchContext) -> list[Any]:
        """One value per row of the row group (None for dropped rows)."""
        raise NotImplementedError(f"{type(self).__name__} is a cell generator")


def rng_for(seed: int, column: str, stream: int) -> np.random.Generator:
    """A generator whose draws depend only on (run seed, column, stream): resumed runs repeat them. A row group's
    stream is `RowGroupSpec.stream` (its index, in a run that was never extended)."""
    column_key = int.from_bytes(hashlib.blake2b(column.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, column_key, stream])
