"""Arrow types for columns: declared dtypes, JSON Schemas mapped to structs, lists and scalars, seed types.

Parts of a schema Arrow cannot type (anyOf, free-form objects) are stored as JSON strings, never dropped.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from rowloom.config.columns import (
    BernoulliSampler,
    CategorySampler,
    ColumnBase,
    CustomColumn,
    DatetimeSampler,
    EmbeddingColumn,
    ExpressionColumn,
    GaussianSampler,
    LLMCodeColumn,
    LLMColumnBase,
    LLMJudgeColumn,
    LLMStructuredColumn,
    SubcategorySampler,
    UniformSampler,
    ValidationColumn,
)
from rowloom.config.seed import SeedColumns
from rowloom.engine.skips import SKIPPED

_DTYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
#: What a validation column writes per row.
VALIDATION_TYPE = pa.struct([pa.field("valid", pa.bool_()), pa.field("errors", pa.string())])
EMBEDDING_TYPE = pa.list_(pa.float32())


def _scalar_type(values: list[Any]) -> pa.DataType:
    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return pa.bool_()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def column_type(column: ColumnBase) -> pa.DataType:
    """The Arrow type a column is written with."""
    if isinstance(column, CategorySampler):
        return _scalar_type(column.values)
    if isinstance(column, SubcategorySampler):
        return _scalar_type([v for vs in column.values.values() for v in vs])
    if isinstance(column, UniformSampler):
        return pa.int64() if column.integer else pa.float64()
    if isinstance(column, GaussianSampler):
        return pa.int64() if column.integer else pa.float64()
    if isinstance(column, BernoulliSampler):
        return pa.bool_()
    if isinstance(column, DatetimeSampler):
        return pa.timestamp("us")
    if isinstance(column, LLMStructuredColumn | LLMJudgeColumn):
        schema = column.output_schema
        return schema_type(schema, schema)
    if isinstance(column, ExpressionColumn | CustomColumn):
        return _DTYPES.get(column.dtype, pa.string())
    if isinstance(column, ValidationColumn):
        return VALIDATION_TYPE
    if isinstance(column, EmbeddingColumn):
        return EMBEDDING_TYPE
    return pa.string()


def output_types(column: ColumnBase) -> list[tuple[str, pa.DataType]]:
    """Every value a column writes, with its Arrow type (seed columns keep the seed file's types)."""
    if isinstance(column, SeedColumns):
        return [(f.name, f.type) for f in column.arrow_schema]
    types = [(column.name, column_type(column))]
    if isinstance(column, LLMColumnBase) and column.record_endpoint:
        types.append((f"{column.name}__endpoint", pa.string()))
    if isinstance(column, LLMCodeColumn) and column.validate_code:
        types += [(f"{column.name}__valid", pa.bool_()), (f"{column.name}__errors", pa.string())]
    return types


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
        seen += 1
    return node


def schema_type(node: dict[str, Any], root: dict[str, Any]) -> pa.DataType:
    """Arrow type for a JSON Schema node (unknown shapes become JSON strings)."""
    node = _resolve(node, root)
    kind = node.get("type")
    if kind == "object" and node.get("properties"):
        return pa.struct([pa.field(k, schema_type(v, root)) for k, v in node["properties"].items()])
    if kind == "array" and isinstance(node.get("items"), dict):
        return pa.list_(schema_type(node["items"], root))
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "string":
        return pa.string()
    if node.get("enum"):
        return _scalar_type(node["enum"])
    return pa.string()  # free-form: stored as JSON text


def to_arrow_value(value: Any, dtype: pa.DataType) -> Any:
    """Shape a Python value for `dtype` (JSON text for free-form parts, struct fields by name; skipped = null)."""
    if value is None or value is SKIPPED:
        return None
    if pa.types.is_struct(dtype):
        if not isinstance(value, dict):
            return None
        return {f.name: to_arrow_value(value.get(f.name), f.type) for f in dtype}
    if pa.types.is_list(dtype):
        return [to_arrow_value(v, dtype.value_type) for v in value] if isinstance(value, list) else None
    if pa.types.is_string(dtype) and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if pa.types.is_floating(dtype) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
