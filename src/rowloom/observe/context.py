"""Correlation ids carried by context variables, so lower layers emit linked events without row knowledge.

The engine sets job / row group / column / task ids around a task; the model layer sets the request attempt.
"""

from __future__ import annotations

import contextvars
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


_KEEP = object()  # "leave this id as the enclosing block set it"
_current: ContextVar[Correlation] = ContextVar("rowloom_correlation", default=Correlation())  # noqa: B039 - frozen


def current() -> Correlation:
    """The correlation of the running task (all fields None outside a run)."""
    return _current.get()


def correlate(
    *,
    job: str | object | None = _KEEP,
    row_group: int | object | None = _KEEP,
    column: str | object | None = _KEEP,
    task: str | object | None = _KEEP,
    attempt: str | object | None = _KEEP,
) -> _Correlated:
    """Set some correlation ids for the duration of the block (nested blocks add to outer ones); the block gets
    the correlation it runs under."""
    return _Correlated((job, row_group, column, task, attempt))


class _Correlated:
    """The context manager `correlate` returns: a plain class, not a generator-based one, because it wraps every
    task and every request attempt (it costs two thirds as much)."""

    __slots__ = ("_ids", "_token")

    def __init__(self, ids: tuple[object, ...]):
        self._ids = ids
        self._token: contextvars.Token[Correlation] | None = None

    def __enter__(self) -> Correlation:
        base = _current.get()
        job, row_group, column, task, attempt = self._ids
        value = Correlation(
            base.job if job is _KEEP else job,  # type: ignore[arg-type]
            base.row_group if row_group is _KEEP else row_group,  # type: ignore[arg-type]
            base.column if column is _KEEP else column,  # type: ignore[arg-type]
            base.task if task is _KEEP else task,  # type: ignore[arg-type]
            base.attempt if attempt is _KEEP else attempt,  # type: ignore[arg-type]
        )
        self._token = _current.set(value)
        return value

    def __exit__(self, *exc_info: object) -> None:
        assert self._token is not None
        _current.reset(self._token)
        self._token = None


def detached() -> contextvars.Context:
    """A context that keeps only the current job id: for work done on behalf of many tasks (a batch of many
    cells' requests), whose events must not carry the ids of whichever task happened to start it."""
    context = contextvars.Context()
    context.run(_current.set, Correlation(job=_current.get().job))
    return context
