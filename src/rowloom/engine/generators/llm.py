"""LLM columns: render the prompt, send it through the request executor, parse and validate the reply.

Structured and judge columns ask for a JSON Schema reply and re-ask with the validation error, a bounded
number of times, before the row is dropped as `schema_invalid`. Every reply is read through `read_reply`: one
no parser can read (nested a thousand deep, a number beyond 64 bits…) drops its row as `unreadable_reply`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import jsonschema
import pyarrow as pa

from rowloom.config.columns import LLMColumnBase, LLMJudgeColumn, LLMStructuredColumn
from rowloom.config.models import ModelConfig
from rowloom.config.templates import compile_template
from rowloom.engine.arrow_schema import column_type
from rowloom.engine.generators.base import CellFailed, Generator
from rowloom.engine.generators.render import render
from rowloom.engine.generators.replies import read_reply, storable
from rowloom.models.executor import ModelRequestExecutor, RequestFailed
from rowloom.models.types import ChatRequest

# The endpoint that served the running cell's latest reply: set by `_ask`, read by `cell` in the same task.
_SERVED_BY: ContextVar[str | None] = ContextVar("rowloom_served_by", default=None)
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def parse_json_reply(text: str) -> Any:
    """The JSON value in a reply, tolerating a Markdown code fence around it (NaN and Infinity are not JSON)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped, parse_constant=_not_json)


def read_structured(
    text: str, validator: jsonschema.Draft202012Validator, dtype: pa.DataType
) -> tuple[Any, str | None]:
    """(value, None) for a reply that is valid JSON, valid against the schema and fits the column's type, else
    (None, the problem to tell the model). Raises whatever a parser raises on a reply none can read."""
    try:
        value = parse_json_reply(text)
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return None, f"at {where}: {error.message}"
    return storable(value, dtype), None


class LLMGenerator(Generator):
    """One chat request per cell (plus bounded re-asks for structured replies)."""

    def __init__(self, plan, executor: ModelRequestExecutor, model: ModelConfig):
        super().__init__(plan)
        column = plan.column
        assert isinstance(column, LLMColumnBase)
        self.column = column
        self.executor = executor
        self.model = model
        self.prompt = compile_template(column.prompt)
        self.system = compile_template(column.system_prompt) if column.system_prompt else None
        # A judge's rubrics follow the user's prompt as plain text (never rendered: they are not templates).
        self.instructions = column.instructions if isinstance(column, LLMJudgeColumn) else ""
        self.params = model.inference.as_body()
        self.dtype = column_type(column)
        self.schema: dict[str, Any] | None = None
        self.companions = False  # whether `value` returns a dict of outputs (the column writes companions)
        self.corrections = 0
        if isinstance(column, LLMStructuredColumn | LLMJudgeColumn):
            self.schema = column.output_schema
            self.corrections = column.max_correction_attempts
            self.validator = jsonschema.Draft202012Validator(self.schema)

    def _messages(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": render(self.system, row, self.name)})
        messages.append({"role": "user", "content": render(self.prompt, row, self.name) + self.instructions})
        return messages

    async def _ask(self, messages: list[dict[str, str]]) -> str:
        request = ChatRequest(
            model=self.model.model,
            messages=tuple(messages),
            params=self.params,
            json_schema=self.schema,
            schema_name=self.name,
        )
        try:
            reply = await self.executor.chat(
                self.model.alias, request, group=self.name, weight=self.plan.metadata.weight
            )
        except RequestFailed as exc:
            raise CellFailed(str(exc.outcome), str(exc)) from None
        _SERVED_BY.set(reply.endpoint)
        return reply.text

    async def cell(self, row: Mapping[str, Any]) -> Any:
        """The cell's values: `value`'s, and with `record_endpoint` the endpoint that served the last reply."""
        if not self.column.record_endpoint:
            return await self.value(row)
        _SERVED_BY.set(None)
        value = await self.value(row)
        values = value if self.companions else {self.name: value}
        return {**values, f"{self.name}__endpoint": _SERVED_BY.get()}

    async def value(self, row: Mapping[str, Any]) -> Any:
        """The column's own value for one row (a dict of every output when the column has `companions`)."""
        messages = self._messages(row)
        text = await self._ask(messages)
        if self.schema is None:
            return read_reply("the reply", storable, text.strip(), self.dtype)
        for attempt in range(self.corrections + 1):
            value, problem = read_reply("the structured reply", read_structured, text, self.validator, self.dtype)
            if problem is None:
                return value
            if attempt == self.corrections:
                raise CellFailed("schema_invalid", problem)
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That reply is invalid: {problem}. Reply again with only a JSON object "
                    "that satisfies the schema.",
                },
            ]
            text = await self._ask(messages)
        raise AssertionError("unreachable")
