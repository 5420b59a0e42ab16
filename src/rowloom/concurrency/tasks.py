"""`cancel_and_wait`: stop a background task and wait for it, without swallowing the caller's own cancellation.

Owns only that idiom; knows nothing of what the task does.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has finished; a cancellation aimed at the caller still propagates.

    `task.cancel(); with suppress(CancelledError): await task` cannot tell the task's CancelledError from one
    delivered to the caller while it waits, and swallows both: a cancelled caller would carry on. Here a
    cancellation requested of the caller while it waits is raised. One requested before the call is not: a
    caller cleaning up after its own cancellation may still stop its tasks (the baseline idiom of
    `asyncio.timeout`). Any other exception the task ended with propagates.
    """
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
        return
    if current is not None and current.cancelling() > before:
        # the task ignored its cancellation and returned; the caller's must not be lost with it
        raise asyncio.CancelledError
