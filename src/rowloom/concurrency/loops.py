"""The event loop: which one a run gets (`event_loop_factory`, `run`) and which one runs now (`running_loop`).

Owns only those questions; knows nothing of what runs on the loop.

A run is on asyncio's own loop unless `ROWLOOM_EVENT_LOOP=uvloop` asks for uvloop's (`pip install
'rowloom[uvloop]'`). uvloop does the loop's work in C: a run's client CPU per request is ~5% lower on it
(`benchmarks/instructions.py --loop uvloop --against-loop asyncio`), and admission read the same on it across
simulator seeds. It is not the default yet: the one full benchmark set run on it missed a guardrail at that
guardrail's noise margin (docs/http-client.md#the-event-loop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable that chooses the loop: `asyncio` (the default) or `uvloop`.
LOOP_VARIABLE = "ROWLOOM_EVENT_LOOP"
_CHOICES = ("asyncio", "uvloop")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a run's event loop: asyncio's, or uvloop's when `ROWLOOM_EVENT_LOOP=uvloop`.

    Raises ValueError naming `ROWLOOM_EVENT_LOOP` and the fix when it holds anything else, or asks for uvloop
    where it is not installed."""
    choice = os.environ.get(LOOP_VARIABLE, "").strip().lower() or "asyncio"
    if choice not in _CHOICES:
        raise ValueError(
            f"{LOOP_VARIABLE}={os.environ[LOOP_VARIABLE]!r} is not a loop rowloom knows: set it to "
            f"{' or '.join(_CHOICES)}, or unset it (asyncio)"
        )
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise ValueError(
            f"{LOOP_VARIABLE}=uvloop, but uvloop is not installed: `pip install 'rowloom[uvloop]'`, or unset "
            f"{LOOP_VARIABLE} to run on asyncio's own loop"
        ) from None
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
