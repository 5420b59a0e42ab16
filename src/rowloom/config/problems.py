"""Turn pydantic validation errors into `ConfigProblem`s that name the field path and the fix."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from rowloom.config.columns import COLUMN_TYPES
from rowloom.config.processors import PROCESSOR_TYPES
from rowloom.errors import ConfigProblem


def _path(loc: tuple[Any, ...], data: Any) -> str:
    """`('columns', 2, 'llm_text', 'prompt')` -> `columns[2].prompt` (union tags dropped, names added)."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts[-1] += f" ({node['name']})"
            continue
        if isinstance(node, dict) and item not in node and (item in COLUMN_TYPES or item in PROCESSOR_TYPES):
            continue  # a discriminated-union tag, not a field
        parts.append(("." if parts else "") + str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _fix(error: dict[str, Any]) -> str:
    kind = error["type"]
    field = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "missing":
        return f"add the required field `{field}`"
    if kind == "extra_forbidden" and field in ("api_key", "key", "token", "authorization"):
        return "never put a key in the config: name an environment variable (api_key_env) or a file (api_key_file)"
    if kind == "extra_forbidden":
        return f"remove `{field}` (unknown field) or check its spelling"
    types = PROCESSOR_TYPES if error["loc"] and error["loc"][0] == "processors" else COLUMN_TYPES
    if kind == "union_tag_invalid":
        return f"use one of: {', '.join(types)}"
    if kind == "union_tag_not_found":
        return f"add `type:` with one of: {', '.join(types)}"
    if kind == "finite_number":
        return "give a finite number (not .inf or .nan)"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "give a value of the expected type"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "give a value inside the allowed range"
    return ""


def problems_from_validation(exc: ValidationError, data: Any) -> list[ConfigProblem]:
    """One problem per pydantic error, with a readable path and a suggested fix."""
    out = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag")
            what = "processor" if error["loc"] and error["loc"][0] == "processors" else "column"
            message = f"unknown {what} type {tag!r}"
        out.append(ConfigProblem(_path(tuple(error["loc"]), data), message, _fix(error)))
    return out
