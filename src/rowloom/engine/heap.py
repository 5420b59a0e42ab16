"""`frozen_heap`: the objects alive when a run starts are kept out of the garbage collector's scans until it ends.

A run allocates millions of short-lived objects (events, coroutines, replies), and every few thousand of them the
collector's oldest generation is scanned whole: the imported libraries (pyarrow, pydantic's models, jinja, aiohttp)
and the config, none of which a run frees. On the large scenario (10k requests, one column) the collector cost
0.07-0.41 s of the client's ~4.5 s of CPU per run, the runs with full scans 0.3-0.4 s; with the heap frozen
0.11-0.22 s, never a full scan of it (`benchmarks/gc_freeze.py`). Objects made during the run are collected as
before.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the collector's view of the heap (`gc.freeze`) for the block, and unfreeze it after. When something
    froze it already (the caller, or a run in progress beside this one), it is left to whoever did."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
