"""Processors applied to a complete row group's Arrow table before it is written: drop, rename, schema transform.

Each processor maps a schema to a schema (known before the run, so every part file has the same schema) and a
table to a table. Owns no I/O; `OutputStore` calls them between building the table and writing it.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import pyarrow as pa

from rowloom.config.processors import (
    DropColumnsProcessor,
    RenameColumnsProcessor,
    SchemaTransformProcessor,
)
from rowloom.config.templates import compile_template
from rowloom.engine.arrow_schema import to_arrow_value
from rowloom.engine.generators.base import CellFailed
from rowloom.engine.generators.render import render
from rowloom.errors import TemplateError


class Processor(Protocol):
    """One step between a complete row group and its file."""

    def schema(self, schema: pa.Schema) -> pa.Schema:
        """The schema this step turns `schema` into."""
        ...

    def apply(self, table: pa.Table) -> pa.Table:
        """The table this step turns `table` into."""
        ...


class DropColumns:
    """Leaves columns out of the written table."""

    def __init__(self, config: DropColumnsProcessor):
        self.columns = list(config.columns)

    def schema(self, schema: pa.Schema) -> pa.Schema:
        return pa.schema([f for f in schema if f.name not in self.columns])

    def apply(self, table: pa.Table) -> pa.Table:
        return table.drop_columns([c for c in self.columns if c in table.column_names])


class RenameColumns:
    """Renames columns (`old -> new`), keeping their order and types."""

    def __init__(self, config: RenameColumnsProcessor):
        self.mapping = dict(config.mapping)

    def schema(self, schema: pa.Schema) -> pa.Schema:
        return pa.schema([f.with_name(self.mapping.get(f.name, f.name)) for f in schema])

    def apply(self, table: pa.Table) -> pa.Table:
        return table.rename_columns([self.mapping.get(n, n) for n in table.column_names])


def _unify(types: list[pa.DataType]) -> pa.DataType:
    """One type for the elements of a template list: equal types, or structs merged field by field."""
    if not types:
        return pa.string()
    if all(t == types[0] for t in types):
        return types[0]
    if all(pa.types.is_struct(t) for t in types):
        fields: dict[str, list[pa.DataType]] = {}
        for t in types:
            for f in t:
                fields.setdefault(f.name, []).append(f.type)
        return pa.struct([pa.field(name, _unify(ts)) for name, ts in fields.items()])
    return pa.string()  # mixed shapes: each element as JSON text


def template_type(node: Any) -> pa.DataType:
    """The Arrow type a field template produces: strings for templates, structs and lists by their shape."""
    if isinstance(node, bool):
        return pa.bool_()
    if isinstance(node, int):
        return pa.int64()
    if isinstance(node, float):
        return pa.float64()
    if isinstance(node, dict):
        return pa.struct([pa.field(k, template_type(v)) for k, v in node.items()])
    if isinstance(node, list):
        return pa.list_(_unify([template_type(v) for v in node]))
    return pa.string()


_ONE_NAME = re.compile(r"^\s*\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}\s*$")


class SchemaTransform:
    """New fields rendered per row from templates; `keep` columns carried over unchanged."""

    def __init__(self, config: SchemaTransformProcessor, label: str):
        self.fields = dict(config.fields)
        self.keep = list(config.keep)
        self.label = label
        self.needs = sorted(config.needs() - set(self.keep)) + self.keep
        self.types = {name: template_type(node) for name, node in self.fields.items()}

    def schema(self, schema: pa.Schema) -> pa.Schema:
        kept = [schema.field(name) for name in self.keep if name not in self.fields]
        return pa.schema([*kept, *(pa.field(name, t) for name, t in self.types.items())])

    def _render(self, node: Any, row: dict[str, Any]) -> Any:
        if isinstance(node, str):
            name = _ONE_NAME.match(node)
            if name and name.group(1) in row and row[name.group(1)] is None:
                return None  # a null (e.g. skipped) value stays null rather than becoming the text "None"
            try:
                return render(compile_template(node), row, self.label)
            except CellFailed as failed:  # rows are being written: none can be dropped any more
                raise TemplateError(
                    f"{failed.detail} (a processor runs as rows are written and cannot drop one: guard the "
                    "template against such values, e.g. with `if`)"
                ) from None
        if isinstance(node, dict):
            return {k: self._render(v, row) for k, v in node.items()}
        if isinstance(node, list):
            return [self._render(v, row) for v in node]
        return node

    def apply(self, table: pa.Table) -> pa.Table:
        needed = [n for n in dict.fromkeys(self.needs) if n in table.column_names]
        rows = table.select(needed).to_pylist() if needed else [{} for _ in range(table.num_rows)]
        columns: dict[str, pa.Array] = {}
        for name in self.keep:
            if name not in self.fields:
                columns[name] = table.column(name)
        for name, node in self.fields.items():
            kind = self.types[name]
            columns[name] = pa.array([to_arrow_value(self._render(node, row), kind) for row in rows], type=kind)
        return pa.table(columns, schema=self.schema(table.schema))


def build_processors(configs: list[Any]) -> list[Processor]:
    """The engine's processors for a config's `processors:` list, in order."""
    out: list[Processor] = []
    for i, config in enumerate(configs):
        if isinstance(config, DropColumnsProcessor):
            out.append(DropColumns(config))
        elif isinstance(config, RenameColumnsProcessor):
            out.append(RenameColumns(config))
        elif isinstance(config, SchemaTransformProcessor):
            out.append(SchemaTransform(config, f"processors[{i}]"))
        else:
            raise TypeError(f"no processor for {type(config).__name__}")
    return out


def processed_schema(processors: list[Processor], schema: pa.Schema) -> pa.Schema:
    """The schema written after every processor."""
    for processor in processors:
        schema = processor.schema(schema)
    return schema


def apply_processors(processors: list[Processor], table: pa.Table) -> pa.Table:
    """A complete row group's table after every processor."""
    for processor in processors:
        table = processor.apply(table)
    return table
