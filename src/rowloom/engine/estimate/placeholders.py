"""Placeholder replies of the dry estimate: text of a given token length and JSON instances valid against a schema,
as long as the worst case allows (upper bound) or as short as the schema allows (lower bound).

Pure functions of the request's schema and length; no I/O, no knowledge of columns. The placeholders only need to
be type-correct for the columns downstream and about as long as the bound they stand for.
"""

from __future__ import annotations

import json
from typing import Any

#: Three-letter English words: one token each in byte-level BPE vocabularies (GPT-2's, SmolLM2's, Llama's) and
#: four characters with their space, so `n` words are about `n` tokens by any counter rowloom uses.
FILLER_WORDS = ("the", "and", "was", "for", "you", "are", "not", "but", "can", "all", "new", "one", "our", "has")
#: Characters per token the JSON placeholders are sized with (the approximation's ratio).
CHARS_PER_TOKEN = 4
#: Past this depth a recursive schema gets only what it requires, so building terminates.
_DEEP = 6
#: Longest array a full-length placeholder builds when the schema gives no maxItems.
_DEFAULT_ITEMS = 3


def filler_text(tokens: int) -> str:
    """About `tokens` tokens of text (at least one word)."""
    count = max(1, tokens)
    return " ".join(FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(count))


def _filler_chars(length: int) -> str:
    text = filler_text(length // CHARS_PER_TOKEN + 1)
    return text[:length]


class SchemaExample:
    """Builds instances of one JSON Schema (the subset structured columns use): object/properties/required,
    array items/minItems/maxItems, string minLength/maxLength, integer/number minimum/maximum (and exclusive
    bounds), boolean, null, enum, const, anyOf/oneOf (first branch), allOf (merged), `$ref` into the root.

    `full=False` gives the shortest instance (required properties only, the fewest items, the shortest strings
    and enum values); `full=True` every property, the most items (up to a few without maxItems) and strings of
    `fill` characters within their bounds.
    """

    def __init__(self, root: Any):
        self.root = root

    def value(self, schema: Any, *, full: bool, fill: int = 0, depth: int = 0) -> Any:
        """An instance of `schema` (relative to this builder's root for `$ref`)."""
        if schema is True or schema == {}:
            return _filler_chars(fill) if full else ""
        if not isinstance(schema, dict):
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            by_size = sorted(schema["enum"], key=lambda v: len(json.dumps(v)))
            return by_size[-1] if full else by_size[0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.value(schema[key][0], full=full, fill=fill, depth=depth + 1)
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null") if full else kind[0]
        if kind == "object":
            return self._object(schema, full, fill, depth)
        if kind == "array":
            return self._array(schema, full, fill, depth)
        if kind in ("integer", "number"):
            return self._number(schema, kind, full)
        if kind == "boolean":
            return full
        if kind == "null":
            return None
        return self._string(schema, full, fill)

    def sized(self, schema: Any, tokens: int) -> Any:
        """The full instance whose strings are as long as they can be while its JSON stays within `tokens` tokens
        (`CHARS_PER_TOKEN` characters each); with no room at all, the full instance with the shortest strings."""
        budget = tokens * CHARS_PER_TOKEN
        low, high = 0, budget
        best = self.value(schema, full=True, fill=0)
        while low <= high:  # the JSON's length grows with `fill`
            middle = (low + high) // 2
            candidate = self.value(schema, full=True, fill=middle)
            if len(json.dumps(candidate)) <= budget:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        return best

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(32):  # bounded: a pure `$ref` cycle must not hang
            if "$ref" in schema:
                target = self._pointer(str(schema["$ref"]))
                schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            elif "allOf" in schema:
                merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    part = self._resolve(part) if isinstance(part, dict) else {}
                    for key, value in part.items():
                        if key == "properties":
                            merged["properties"] = {**merged.get("properties", {}), **value}
                        elif key == "required":
                            merged["required"] = [*merged.get("required", []), *value]
                        else:
                            merged.setdefault(key, value)
                schema = merged
            else:
                return schema
        return {}

    def _pointer(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def _object(self, schema: dict[str, Any], full: bool, fill: int, depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        chosen = [n for n in properties if n in required or (full and depth < _DEEP)]
        out = {name: self.value(properties[name], full=full, fill=fill, depth=depth + 1) for name in chosen}
        for name in required - set(out):  # required without a property schema: anything goes
            out[name] = self.value({}, full=full, fill=fill, depth=depth + 1)
        return out

    def _array(self, schema: dict[str, Any], full: bool, fill: int, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        count = low
        if full and depth < _DEEP:
            count = max(low, int(schema.get("maxItems", max(low, _DEFAULT_ITEMS))))
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        out = []
        for i in range(count):
            item = prefix[i] if i < len(prefix) else items
            out.append(self.value(item if item is not False else {}, full=full, fill=fill, depth=depth + 1))
        return out

    @staticmethod
    def _number(schema: dict[str, Any], kind: str, full: bool) -> int | float:
        step = 1 if kind == "integer" else 0.5
        low = schema.get("minimum")
        if low is None and schema.get("exclusiveMinimum") is not None:
            low = schema["exclusiveMinimum"] + step
        high = schema.get("maximum")
        if high is None and schema.get("exclusiveMaximum") is not None:
            high = schema["exclusiveMaximum"] - step
        value = (high if high is not None else low) if full else (low if low is not None else high)
        value = 0 if value is None else value
        return int(value) if kind == "integer" else float(value)

    @staticmethod
    def _string(schema: dict[str, Any], full: bool, fill: int) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        length = max(low, fill) if full else low
        if high is not None:
            length = min(length, int(high))
        return _filler_chars(length)


def json_placeholder(schema: dict[str, Any], *, full: bool, tokens: int) -> str:
    """A JSON reply valid against `schema`: the longest that fits `tokens` (`full`) or the shortest."""
    example = SchemaExample(schema)
    value = example.sized(schema, tokens) if full else example.value(schema, full=False)
    return json.dumps(value)
