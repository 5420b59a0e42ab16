"""Turn pydantic validation errors into `ConfigProblem`s that name the field path and the fix.

A near miss of a field name or a type gets "did you mean …?" (difflib), found by walking the config's pydantic
types along the error's path.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from rowloom.config.columns import COLUMN_TYPES
from rowloom.config.processors import PROCESSOR_TYPES
from rowloom.errors import ConfigProblem


def show_key(key: Any) -> str:
    """A config key as a user can read it in a path: as is when printable, quoted when blank or unprintable."""
    text = str(key)
    return text if text.strip() == text and text.isprintable() and text else repr(text)


def _path(loc: tuple[Any, ...], data: Any) -> str:
    """`('columns', 2, 'llm_text', 'prompt')` -> `columns[2].prompt` (union tags dropped, names added)."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            label = (
                next((node[k] for k in ("name", "alias") if isinstance(node.get(k), str)), None)
                if isinstance(node, dict)
                else None
            )
            if label is not None:  # a column or provider by its name, a model by its alias
                parts[-1] += f" ({label})"
            continue
        if isinstance(node, dict) and item not in node and (item in COLUMN_TYPES or item in PROCESSOR_TYPES):
            continue  # a discriminated-union tag, not a field
        parts.append(("." if parts else "") + show_key(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def did_you_mean(name: str, known: Iterable[str], quote: str = "'") -> str:
    """`did you mean 'prompt'? ` for the nearest of `known` to `name` (difflib), or '' when none is near."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {quote}{found[0]}{quote}? " if found else ""


def union_members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union (`X | None`, a discriminated union), or `(tp,)`."""
    if typing.get_origin(tp) is typing.Annotated:
        return union_members(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(tp) for m in union_members(arg))
    return (tp,)


def _step(tp: Any, item: Any) -> Any:
    """The type found one step along an error path: a field of a model, an item of a list, a union member."""
    for member in union_members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if isinstance(item, str):
                for name, field in member.model_fields.items():
                    if item in (name, field.alias):
                        return field.annotation
                tag = member.model_fields.get("type")
                if tag is not None and typing.get_args(tag.annotation) == (item,):
                    return member  # a discriminated union's tag in the path
        elif typing.get_origin(member) in (list, tuple) and isinstance(item, int):
            return typing.get_args(member)[0]
        elif typing.get_origin(member) is dict and isinstance(item, str):
            return typing.get_args(member)[1]
    return None


def _model(tp: Any) -> type[BaseModel] | None:
    return next((m for m in union_members(tp) if isinstance(m, type) and issubclass(m, BaseModel)), None)


def field_names(root: Any, loc: Sequence[Any], *, nested: bool = False) -> list[str]:
    """The field names (aliases where set) of the model at `loc` under the type `root`, or [] if not a model.

    `nested`: the fields of its sections instead (`inference.temperature`), for a field one level too high.
    """
    tp = root
    for item in loc:
        tp = _step(tp, item)
        if tp is None:
            return []
    model = _model(tp)
    if model is None:
        return []
    names = [(field.alias or name, field.annotation) for name, field in model.model_fields.items()]
    if not nested:
        return [name for name, _ in names]
    return [f"{name}.{sub}" for name, annotation in names for sub in field_names(annotation, ())]


def _fix(error: dict[str, Any], root: Any) -> str:
    kind = error["type"]
    field = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "missing":
        return f"add the required field `{field}`"
    if kind == "extra_forbidden" and field in ("api_key", "key", "token", "authorization"):
        return "never put a key in the config: name an environment variable (api_key_env) or a file (api_key_file)"
    if kind == "extra_forbidden":
        known = field_names(root, error["loc"][:-1]) if root is not None else []
        guess = did_you_mean(field, known, quote="`")
        if not guess and root is not None:  # a field of a section, one level too high (`temperature` on a model)
            below = {path.rpartition(".")[2]: path for path in field_names(root, error["loc"][:-1], nested=True)}
            near = difflib.get_close_matches(field, list(below), n=1, cutoff=0.8)
            guess = f"did you mean `{below[near[0]]}`? " if near else ""
        return f"{guess}remove `{field}` or check its spelling" if not guess else f"{guess}(or remove `{field}`)"
    types_ = PROCESSOR_TYPES if error["loc"] and error["loc"][0] == "processors" else COLUMN_TYPES
    if kind == "union_tag_invalid":
        tag = str(error.get("ctx", {}).get("tag", ""))
        guess = did_you_mean(tag, types_)
        return f"{guess}(or use one of: {', '.join(types_)})" if guess else f"use one of: {', '.join(types_)}"
    if kind == "union_tag_not_found":
        return f"add `type:` with one of: {', '.join(types_)}"
    if kind == "too_short":
        return "give at least one entry" if error.get("ctx", {}).get("min_length") == 1 else "give more entries"
    if kind == "finite_number":
        return "give a finite number (not .inf or .nan)"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "give a value of the expected type"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "give a value inside the allowed range"
    return ""


def problems_from_errors(
    errors: Iterable[dict[str, Any]], data: Any, root: Any = None, prefix: tuple[Any, ...] = ()
) -> list[ConfigProblem]:
    """One problem per pydantic error dict, with a readable path and a suggested fix.

    `data` is the whole config as parsed from YAML and `root` its pydantic type (for "did you mean" on field
    names); `prefix` is where in `data` the validated value sits (`('columns', 3)` for one column).
    """
    out = []
    for error in errors:
        error = {**error, "loc": (*prefix, *error["loc"])}
        message = str(error["msg"]).removeprefix("Value error, ")
        path = _path(tuple(error["loc"]), data)
        if error["type"] == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag")
            what = "processor" if error["loc"] and error["loc"][0] == "processors" else "column"
            message = f"unknown {what} type {tag!r}"
            path += ".type"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        out.append(ConfigProblem(path, message, _fix(error, root)))
    return out


def problems_from_validation(exc: ValidationError, data: Any, root: Any = None) -> list[ConfigProblem]:
    """One problem per pydantic error, with a readable path and a suggested fix."""
    return problems_from_errors(exc.errors(include_url=False), data, root)
