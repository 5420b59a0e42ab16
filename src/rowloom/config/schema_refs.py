"""`$ref`s in the JSON Schemas of structured columns: each must point inside the schema itself.

A reference that cannot be resolved would otherwise surface per row, as a crash while validating replies;
rowloom never fetches schemas over the network, so only local (`#...`) references are accepted.
"""

from __future__ import annotations

from typing import Any

from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012


def _refs(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(where, ref) for every `$ref` string in a schema, depth first."""
    found: list[tuple[str, str]] = []
    stack = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append((where or "(root)", ref))
            stack += [(v, f"{where}/{k}" if where else str(k)) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, f"{where}/{i}" if where else str(i)) for i, v in enumerate(item)]
    return found


def unresolvable_ref(schema: dict[str, Any]) -> str | None:
    """A description of the first `$ref` that is not local or points nowhere, or None when all resolve."""
    refs = _refs(schema)
    if not refs:
        return None
    resolver = Registry().with_resource("", DRAFT202012.create_resource(schema)).resolver()
    for where, ref in sorted(refs):
        if not ref.startswith("#"):
            return f"$ref {ref!r} at {where} is not local; rowloom never fetches schemas, so inline it under $defs"
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"$ref {ref!r} at {where} points nowhere in the schema; define it under $defs or fix the pointer"
    return None
