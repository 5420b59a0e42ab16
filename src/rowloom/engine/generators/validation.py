"""Validation columns: `{valid, errors}` per row from a user validator or a code validator.

User validators run in a worker bounded by `timeout_s`: a daemon thread (the default; a thread cannot be killed,
so one that never returns is abandoned, and it does not keep the process alive), or a child process started by
the forkserver and killed on timeout. A validator that raises or times out is an outcome, counted per column
(`validation` in the run summary): recorded as `{valid: false, errors: "..."}` or, with `on_error: drop`, a
dropped row. Never a crash of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import multiprocessing
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from rowloom.config.columns import ValidationColumn
from rowloom.engine.generators.base import CellFailed, Generator
from rowloom.engine.generators.code import validate_code
from rowloom.engine.generators.custom import import_function, resolve_callable
from rowloom.errors import ConfigError, ConfigProblem


class ValidatorFailed(Exception):
    """The validator itself did not give an answer: it raised, timed out, or returned something unreadable."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # validator_error | validator_timeout


def interpret(result: Any) -> tuple[bool, str | None]:
    """A validator's return value as (valid, errors).

    None or True: valid. False: invalid. `(bool, message)`. A list of error strings (empty = valid). A mapping
    with `valid` (and optionally `errors`). A string: its text is the error (empty = valid).
    """
    if result is None:
        return True, None
    if isinstance(result, bool) or type(result).__name__ == "bool_":
        return bool(result), None
    if isinstance(result, str):
        return (not result), (result or None)
    if isinstance(result, Mapping) and "valid" in result:
        errors = result.get("errors")
        if isinstance(errors, list | tuple):
            errors = "; ".join(map(str, errors)) or None
        return bool(result["valid"]), (str(errors) if errors else None)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        return result[0], (str(result[1]) if result[1] else None)
    if isinstance(result, list | tuple) and all(isinstance(e, str) for e in result):
        return (not result), ("; ".join(result) or None)
    raise ValidatorFailed(
        "validator_error",
        f"returned {type(result).__name__}; return a bool, (bool, message), a list of errors or {{valid, errors}}",
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _function_ref(column: ValidationColumn) -> tuple[str, str]:
    """(module, qualified name) of the validator, for importing it again in a child process."""
    fn = column.function
    if isinstance(fn, str):
        module, _, name = fn.partition(":")
        return module, name
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in name:
        raise ConfigError(
            ConfigProblem(
                f"columns ({column.name}).function",
                f"{name or fn!r} is not importable by a child process (isolation: process)",
                "define the validator at module level and give its import path 'package.module:function'",
            )
        )
    return module, name


def resolve_validator(column: ValidationColumn) -> Callable[..., Any]:
    """The validator callable (importing 'package.module:function' with a clear error)."""
    return resolve_callable(column)


# ------------------------------------------------------------------ workers


ABANDONED_THREADS = 32
"""Validator threads of one column that may still run after their call timed out. A thread cannot be killed:
at this many, a new call waits (within its own timeout) for one of them to return instead of leaving one more
thread behind per row; a validator that hangs for good then fails each call after its timeout, with no thread."""


class AbandonedThreads:
    """Counts one column's validator threads that outlived their timeout and are still running."""

    def __init__(self, limit: int = ABANDONED_THREADS):
        self.limit = limit
        self._lock = threading.Lock()
        self._live: set[int] = set()  # calls whose thread has not returned yet
        self._abandoned: set[int] = set()  # those of them whose call timed out
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def count(self) -> int:
        return len(self._abandoned)

    async def room(self, timeout_s: float) -> bool:
        """Whether a thread may start: at once below the limit, else once an abandoned one returns (False when
        none does within `timeout_s`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self._abandoned) >= self.limit:
            woken: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.append(woken)
            try:
                await asyncio.wait_for(woken, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False
            finally:
                with self._lock:
                    if woken in self._waiters:
                        self._waiters.remove(woken)
        return True

    def started(self, call: int) -> None:
        with self._lock:
            self._live.add(call)

    def abandon(self, call: int) -> None:
        """The call timed out: counted while its thread runs on (not at all if it has returned already)."""
        with self._lock:
            if call in self._live:
                self._abandoned.add(call)

    def returned(self, call: int) -> None:
        """A call's thread returned (from that thread); when it was abandoned, wake whoever waits for room."""
        with self._lock:
            self._live.discard(call)
            if call not in self._abandoned:
                return
            self._abandoned.discard(call)
            waiters, self._waiters = self._waiters, []
        for woken in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                woken.get_loop().call_soon_threadsafe(_wake, woken)


_CALLS = itertools.count()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def call_in_thread(
    fn: Callable[[Any], Any], arg: Any, timeout_s: float, name: str, abandoned: AbandonedThreads | None = None
) -> Any:
    """`fn(arg)` in a fresh daemon thread; `ValidatorFailed` when it raises or outlives `timeout_s`. With
    `abandoned`, a call that times out is counted there until its thread returns, and no thread is started while
    the count is at its limit."""
    if abandoned is not None and not await abandoned.room(timeout_s):
        raise ValidatorFailed(
            "validator_timeout",
            f"not run within {timeout_s:g} s: {abandoned.count} earlier calls still run past their timeout (the "
            "validator hangs); fix it, or set isolation: process, which kills a validator that times out",
        )
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
    call = next(_CALLS)

    def deliver(outcome: tuple[bool, Any]) -> None:
        if not future.done():
            future.set_result(outcome)

    def target() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn(arg))
        except BaseException as exc:  # user code: every exception is the validator's outcome
            outcome = (False, exc)
        if abandoned is not None:
            abandoned.returned(call)
        with contextlib.suppress(RuntimeError):  # the loop closed while the validator ran on
            loop.call_soon_threadsafe(deliver, outcome)

    if abandoned is not None:
        abandoned.started(call)
    threading.Thread(target=target, name=f"rowloom-validator-{name}", daemon=True).start()
    try:
        ok, value = await asyncio.wait_for(future, timeout_s)
    except TimeoutError:
        if abandoned is not None:
            abandoned.abandon(call)
        raise ValidatorFailed("validator_timeout", f"timed out after {timeout_s:g} s") from None
    if not ok:
        if isinstance(value, AssertionError):
            return {"valid": False, "errors": str(value) or "assertion failed"}
        raise ValidatorFailed("validator_error", f"raised {_describe(value)}")
    return value


def _child(module: str, name: str, sys_path: list[str], arg: Any, conn: Any) -> None:
    """Runs in the child process: import the validator, call it, send back ('ok', value) or ('error', text)."""
    sys.path[:] = sys_path
    try:
        fn = import_function(module, name)
        conn.send(("started", None))  # the timeout covers the validator, not the process start and imports
        value = fn(arg)
        message: tuple[str, Any] = ("ok", value)
    except AssertionError as exc:
        message = ("ok", {"valid": False, "errors": str(exc) or "assertion failed"})
    except BaseException as exc:
        message = ("error", f"raised {_describe(exc)}")
    try:
        conn.send(message)
    except Exception as exc:  # e.g. an unpicklable return value
        conn.send(("error", f"returned a value that cannot be sent back ({_describe(exc)})"))
    conn.close()


#: Longest a validator process may take to start and import the validator (not counted in `timeout_s`).
_START_S = 60.0


def _wait_readable(conn: Any, timeout_s: float) -> bool:
    return bool(conn.poll(timeout_s))


async def call_in_process(ref: tuple[str, str], arg: Any, timeout_s: float) -> Any:
    """The validator in a child process (forkserver), killed when it outlives `timeout_s`."""
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(*ref, list(sys.path), arg, sender), daemon=True)
    process.start()
    sender.close()
    try:
        for deadline in (_START_S, timeout_s):
            ready = await asyncio.to_thread(_wait_readable, receiver, deadline)
            if not ready:
                what = "did not start" if deadline is _START_S else "timed out"
                raise ValidatorFailed("validator_timeout", f"{what} after {deadline:g} s (process killed)")
            try:
                kind, value = receiver.recv()
            except EOFError:
                await asyncio.to_thread(process.join, 5)
                raise ValidatorFailed(
                    "validator_error", f"validator process exited with code {process.exitcode} before answering"
                ) from None
            if kind != "started":
                break
        if kind == "error":
            raise ValidatorFailed("validator_error", value)
        return value
    finally:
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join, 5)
        receiver.close()
        with contextlib.suppress(ValueError):
            process.close()


# ------------------------------------------------------------------ the column


class ValidationGenerator(Generator):
    """One `{valid, errors}` per row; counts outcomes in `self.outcomes` (valid/invalid/error/timeout)."""

    def __init__(self, plan):
        super().__init__(plan)
        column = plan.column
        assert isinstance(column, ValidationColumn)
        self.column = column
        self.outcomes: Counter[str] = Counter()
        self.fn: Callable[..., Any] | None = None
        self.ref: tuple[str, str] | None = None
        self.abandoned = AbandonedThreads()
        if column.function is not None:
            if column.isolation == "process":
                self.ref = _function_ref(column)
                resolve_validator(column)  # fail at start, not per row, when it cannot be imported
            else:
                self.fn = resolve_validator(column)

    async def _user(self, row: dict[str, Any]) -> tuple[bool, str | None]:
        column = self.column
        if self.ref is not None:
            result = await call_in_process(self.ref, row, column.timeout_s)
        elif self.fn is not None and inspect.iscoroutinefunction(self.fn):
            try:
                result = await asyncio.wait_for(self.fn(row), column.timeout_s)
            except TimeoutError:
                raise ValidatorFailed("validator_timeout", f"timed out after {column.timeout_s:g} s") from None
            except AssertionError as exc:
                result = {"valid": False, "errors": str(exc) or "assertion failed"}
            except Exception as exc:
                raise ValidatorFailed("validator_error", f"raised {_describe(exc)}") from None
        else:
            assert self.fn is not None
            result = await call_in_thread(self.fn, row, column.timeout_s, self.name, self.abandoned)
        return interpret(result)

    async def cell(self, row: Mapping[str, Any]) -> Any:
        column = self.column
        try:
            if column.language is not None:
                code = row.get(column.target or "")
                try:
                    errors = await validate_code(
                        column.language, None if code is None else str(code), column.validation
                    )
                except CellFailed as unreadable:  # the code validator's own failure: `on_error` decides
                    error = unreadable.detail.partition(": ")[2]  # past "the python validator: "
                    raise ValidatorFailed("validator_error", f"could not read the code: {error}") from None
                valid, message = not errors, ("; ".join(errors) or None)
            else:
                valid, message = await self._user(dict(row))
        except ValidatorFailed as failed:
            kind = "timeout" if failed.reason == "validator_timeout" else "error"
            self.outcomes[kind] += 1
            if column.on_error == "drop":
                raise CellFailed(failed.reason, str(failed)) from None
            return {"valid": False, "errors": f"validator {failed}"}
        self.outcomes["valid" if valid else "invalid"] += 1
        if not valid and column.drop_invalid:
            raise CellFailed("invalid", message or "")
        return {"valid": valid, "errors": message}
