"""The one boundary where data a model wrote becomes a value: parsed, validated, checked to fit its column.

A model's reply is data, so whatever a parser or validator raises on it — `RecursionError` from deep nesting,
`MemoryError`, `OverflowError` from huge numbers, `ValueError`, a parser library's own errors — is the reply's
fault: its row is dropped with a reason and what went wrong (`CellFailed`), never the run. A value is also
checked against its column's Arrow type here, not at the checkpoint, where one bad value would fail a whole row
group. Must not touch: HTTP bodies (the client classifies those) or rowloom's own code around a parse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

from rowloom.engine.arrow_schema import to_arrow_value
from rowloom.engine.generators.base import CellFailed

T = TypeVar("T")

#: Why a row is dropped when no parser or validator could read what the model wrote.
UNREADABLE_REPLY = "unreadable_reply"

#: How much of a parser's error text a drop reason's detail keeps.
_DETAIL_LIMIT = 300


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, cut to a length a message can hold."""
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described if len(described) <= _DETAIL_LIMIT else described[: _DETAIL_LIMIT - 1] + "…"


def read_reply(what: str, read: Callable[..., T], *args: Any, reason: str = UNREADABLE_REPLY) -> T:
    """`read(*args)` on data a model wrote; whatever it raises drops the row as `CellFailed(reason)`, the detail
    naming `what` was read and the error (a `CellFailed` of its own passes through unchanged)."""
    try:
        return read(*args)
    except CellFailed:
        raise
    except Exception as exc:  # the data's fault, whatever the parser raised: RecursionError, MemoryError, …
        raise CellFailed(reason, f"{what}: {describe(exc)}") from None


def storable(value: T, dtype: pa.DataType) -> T:
    """`value` unchanged once it is known to fit `dtype` (an int beyond 64 bits or a lone surrogate does not)."""
    if isinstance(value, str) and pa.types.is_string(dtype):
        # Most replies are text: what Arrow would refuse in one is what UTF-8 cannot encode (a lone surrogate),
        # found here in a microsecond instead of the ~100 µs of building a one-value array.
        value.encode("utf-8")
        return value
    # Arrow's own conversion, of one value: a scalar converts as a one-value array would (the same refusals) in a
    # twentieth of the time (5 µs against 100 µs for a small struct), once per structured reply.
    pa.scalar(to_arrow_value(value, dtype), type=dtype)
    return value
