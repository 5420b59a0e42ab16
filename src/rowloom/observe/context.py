"""Correlation ids carried by context variables, so lower layers emit linked events without row knowledge.

The engine sets job / row group / column / task ids around a task; the model layer sets the request attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Correlation:
    """The ids that link an event to the work that caused it; any may be unset."""

    job: str | None = None
    row_group: int | None = None
    column: str | None = None
    task: str | None = None
    attempt: str | None = None


_current: ContextVar[Correlation] = ContextVar("rowloom_correlation", default=Correlation())  # noqa: B039 - frozen


def current() -> Correlation:
    """The correlation of the running task (all fields None outside a run)."""
    return _current.get()


@contextlib.contextmanager
def correlate(**ids: object) -> Iterator[Correlation]:
    """Set some correlation ids for the duration of the block (nested blocks add to outer ones)."""
    base = _current.get()
    fields = {k: getattr(base, k) for k in Correlation.__slots__}
    for key, value in ids.items():
        if key not in fields:
            raise TypeError(f"unknown correlation id {key!r}")
        fields[key] = value
    token = _current.set(Correlation(**fields))  # type: ignore[arg-type]
    try:
        yield _current.get()
    finally:
        _current.reset(token)
