"""What changed between the config an output folder was written with and the config of this run, in words.

Compares two `DatasetConfig.fingerprint_fields()` values (the one kept in the manifest and the current one) and
names columns and models by their names, never by their position: a renamed column reads as "column 'product'
was renamed or removed", not as `columns[0] (product).name`. Pure functions over plain data.
"""

from __future__ import annotations

from typing import Any

MAX_CHANGES = 6  # one line: the first few changes say enough to recognise the edit
MAX_NAMES = 12


def field_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two JSON-like values (a list of another length is one)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += field_paths(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += field_paths(a, b, f"{prefix}[{i}]")
        return out
    return [] if old == new else [prefix or "(root)"]


def _named(items: Any, key: str) -> dict[str, Any]:
    return {str(item.get(key)): item for item in items or [] if isinstance(item, dict)}


def _by_name(kind: str, old: Any, new: Any, key: str) -> list[str]:
    """Changes of a list of named entries (columns by `name`, models by `alias`)."""
    before, after = _named(old, key), _named(new, key)
    changes = [f"{kind} {name!r} was renamed or removed" for name in before if name not in after]
    changes += [f"{kind} {name!r} is new" for name in after if name not in before]
    for name in before:
        if name in after and (paths := field_paths(before[name], after[name])):
            changes.append(f"{kind} {name!r} changed ({_listed(paths)})")
    kept_before = [n for n in before if n in after]
    kept_after = [n for n in after if n in before]
    if kept_before != kept_after:
        changes.append(f"the {kind}s are in another order")
    return changes


def _section(name: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if old is None:
        return [f"{name} was added"]
    if new is None:
        return [f"{name} was removed"]
    if name == "run" and isinstance(old, dict) and isinstance(new, dict):  # scalars: say what they were
        return [f"run.{key} changed ({old.get(key)} → {new.get(key)})" for key in field_paths(old, new)]
    paths = [p for p in field_paths(old, new) if p != "(root)"]
    return [f"{name} changed" + (f" ({_listed(paths)})" if paths else "")]


def _listed(paths: list[str]) -> str:
    return ", ".join(paths[:4]) + (", …" if len(paths) > 4 else "")


def describe(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """One line: what differs (columns and models by name), then the columns the folder was written with."""
    if not isinstance(old, dict) or "columns" not in old:
        return "its manifest does not record the config it was written with"
    changes = _by_name("column", old.get("columns"), new.get("columns"), "name")
    changes += _by_name("model", old.get("models"), new.get("models"), "alias")
    for section in ("run", "seed", "processors"):
        changes += _section(section, old.get(section), new.get(section))
    if not changes:  # equal fields but another fingerprint: a format rowloom no longer reads the same way
        changes = ["the config is stored differently (written by another rowloom version)"]
    more = len(changes) - MAX_CHANGES
    shown = ", ".join(changes[:MAX_CHANGES]) + (f" and {more} more" if more > 0 else "")
    names = list(_named(old.get("columns"), "name"))
    listed = ", ".join(names[:MAX_NAMES]) + (", …" if len(names) > MAX_NAMES else "")
    return f"{shown}; it was written with columns {listed}" if names else shown
