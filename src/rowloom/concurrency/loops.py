"""`running_loop`: the event loop running on this thread, if any.

Owns only that question; knows nothing of what runs on the loop.
"""

from __future__ import annotations

import asyncio


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
