"""Coercion of computed values to a column's declared dtype, with errors that name the column and the fix."""

from __future__ import annotations

import json
from typing import Any

from rowloom.errors import UserCodeError

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def coerce(value: Any, dtype: str, column: str) -> Any:
    """Convert `value` to `dtype` (string/int/float/bool/json); None stays None."""
    if value is None:
        return None
    try:
        if dtype == "string":
            return value if isinstance(value, str) else str(value)
        if dtype == "int":
            if isinstance(value, str):
                value = value.strip()
                return int(float(value)) if "." in value else int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value} is not a whole number")
            return int(value)
        if dtype == "float":
            return float(value.strip() if isinstance(value, str) else value)
        if dtype == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in _TRUE:
                    return True
                if lowered in _FALSE:
                    return False
                raise ValueError(f"{value!r} is not a boolean")
            return bool(value)
        if dtype == "json":
            if isinstance(value, str):
                value = json.loads(value, parse_constant=_not_json)
            json.dumps(value, allow_nan=False)  # must be JSON-serialisable (NaN and Infinity are not JSON)
            return value
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # 1e999 to int, JSON nested too deep
        raise UserCodeError(
            f"column {column!r}: value {str(value)[:80]!r} is not a valid {dtype} ({exc}); "
            f"change the column's `dtype` or the expression/function that computes it"
        ) from None
    raise ValueError(f"unknown dtype {dtype!r}")
