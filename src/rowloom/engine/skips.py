"""Skipped cells: the `SKIPPED` marker a generator returns instead of a value, and how readers see it.

A skipped cell is written as null and counted per column; it is kept distinct from a real null while the row
group is in memory so that downstream columns can tell "skipped" (and skip too) from "generated as null".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final


class _Skipped:
    """The one marker of a skipped cell (falsy, prints as SKIPPED, never written)."""

    _instance: _Skipped | None = None

    def __new__(cls) -> _Skipped:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "SKIPPED"

    def __reduce__(self) -> str:
        return "SKIPPED"


SKIPPED: Final = _Skipped()


def unskip(value: Any) -> Any:
    """The value as user code and templates see it: None for a skipped cell."""
    return None if value is SKIPPED else value


def unskip_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with skipped cells as None."""
    return {name: None if value is SKIPPED else value for name, value in row.items()}
