"""Embedding columns: render each live row's input, send `batch_size` inputs per `/v1/embeddings` request.

One batch task per row group; its requests go through `ModelRequestExecutor.embed`, so they are admitted under
the model's `embeddings` domain (and any aggregate cap of that provider+model, shared with chat). A request that
fails for good drops the rows it carried (counted as `<column>:<outcome>`); an empty input is a null vector.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rowloom.config.columns import EmbeddingColumn
from rowloom.config.models import ModelConfig
from rowloom.config.templates import compile_template
from rowloom.engine.generators.base import BatchContext, CellFailed, FailedCell, Generator
from rowloom.engine.generators.render import render
from rowloom.models.executor import ModelRequestExecutor, RequestFailed


class EmbeddingGenerator(Generator):
    """Vectors for a row group, `batch_size` inputs per request, requests of one row group sent concurrently."""

    def __init__(self, plan, executor: ModelRequestExecutor, model: ModelConfig):
        super().__init__(plan)
        column = plan.column
        assert isinstance(column, EmbeddingColumn)
        self.column = column
        self.executor = executor
        self.model = model
        self.template = compile_template(column.input)

    async def _embed(self, texts: list[str]) -> list[Any]:
        try:
            reply = await self.executor.embed(
                self.model.alias, texts, group=self.name, weight=self.plan.metadata.weight
            )
        except RequestFailed as exc:
            return [FailedCell(str(exc.outcome), str(exc))] * len(texts)
        return [list(vector) for vector in reply.vectors]

    async def batch(self, ctx: BatchContext) -> list[Any]:
        names = tuple(ctx.inputs)
        out: list[Any] = [None] * ctx.spec.count
        rows, texts = [], []
        for row in ctx.live_rows:
            try:
                text = render(self.template, {name: ctx.inputs[name][row] for name in names}, self.name)
            except CellFailed as failed:  # the template raised on this row's values: the row is dropped
                out[row] = FailedCell(failed.reason, failed.detail)
                continue
            if text.strip():
                rows.append(row)
                texts.append(text)
        size = self.column.batch_size
        chunks = [(rows[i : i + size], texts[i : i + size]) for i in range(0, len(rows), size)]
        try:
            async with asyncio.TaskGroup() as group:  # a bug in one request cancels the others
                tasks = [group.create_task(self._embed(chunk_texts)) for _, chunk_texts in chunks]
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None  # the run fails with the error itself, not a group of one
        for (chunk_rows, _), task in zip(chunks, tasks, strict=True):
            for row, vector in zip(chunk_rows, task.result(), strict=True):
                out[row] = vector
        return out
