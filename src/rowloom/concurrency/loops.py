"""The event loop: which one a run gets (`event_loop_factory`, `run`) and which one runs now (`running_loop`).

Owns only those questions; knows nothing of what runs on the loop.

A run is CPU-bound in its own process once an endpoint answers fast (a vLLM server, a zero-latency simulator):
then the loop's own overhead and its socket transports are a share of every request. uvloop's loop does that
work in C; `rowloom bench scale` and `benchmarks/instructions.py` measure the difference (docs/benchmarks.md).
It is used when installed (a dependency on Linux and macOS), unless `ROWLOOM_EVENT_LOOP` says otherwise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable that chooses the loop: `auto` (uvloop when installed), `uvloop` or `asyncio`.
LOOP_VARIABLE = "ROWLOOM_EVENT_LOOP"
_CHOICES = ("auto", "uvloop", "asyncio")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a run's event loop: uvloop's when it is installed (or asked for), else asyncio's.

    Raises ValueError naming `ROWLOOM_EVENT_LOOP` and the fix when it holds something else, or asks for uvloop
    where it is not installed."""
    choice = os.environ.get(LOOP_VARIABLE, "").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(
            f"{LOOP_VARIABLE}={os.environ[LOOP_VARIABLE]!r} is not a loop rowloom knows: set it to "
            f"{', '.join(_CHOICES)}, or unset it (auto: uvloop when installed)"
        )
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError(
                f"{LOOP_VARIABLE}=uvloop, but uvloop is not installed: `pip install uvloop`, or unset "
                f"{LOOP_VARIABLE} to run on asyncio's own loop"
            ) from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop of `event_loop_factory`'s kind, as `asyncio.run` does (Ctrl-C
    cancels it; the loop, its async generators and its default executor are shut down after)."""
    try:
        factory = event_loop_factory()
    except ValueError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top of the error
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
