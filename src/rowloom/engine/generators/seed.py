"""The seed task: one batch per row group that reads that row group's seed rows (a dict of seed columns per row)."""

from __future__ import annotations

import asyncio
from typing import Any

from rowloom.engine.generators.base import BatchContext, Generator
from rowloom.engine.seed_reader import SeedReader


class SeedGenerator(Generator):
    """Reads the seed rows of a row group off the event loop (blocks are decoded in a worker thread)."""

    def __init__(self, plan, reader: SeedReader):
        super().__init__(plan)
        self.reader = reader

    async def batch(self, ctx: BatchContext) -> list[Any]:
        table = await asyncio.to_thread(self.reader.read, ctx.spec.start, ctx.spec.count)
        return table.to_pylist()
