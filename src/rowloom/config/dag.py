"""The column dependency graph: references resolved to columns, checked for unknown names and cycles.

Pure graph logic over column declarations; the engine's planner builds tasks from the order it returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from rowloom.config.columns import ColumnBase
from rowloom.errors import ConfigProblem


def dependency_problems(columns: Sequence[ColumnBase], extra_inputs: frozenset[str] = frozenset()) -> list:
    """Every unknown reference and cycle among `columns`, each as a `ConfigProblem` (empty when sound)."""
    problems: list[ConfigProblem] = []
    names = {c.name for c in columns} | extra_inputs
    for i, column in enumerate(columns):
        for ref in sorted(column.references() - names):
            problems.append(
                ConfigProblem(
                    f"columns[{i}] ({column.name})",
                    f"refers to {ref!r}, which is not a column",
                    f"define a column named {ref!r} or correct the name"
                    + (f" (known: {', '.join(sorted(names))})" if names else ""),
                )
            )
        if column.name in column.references():
            problems.append(
                ConfigProblem(
                    f"columns[{i}] ({column.name})",
                    "refers to itself",
                    "a column cannot read its own value; reference an earlier column",
                )
            )
    cycle = find_cycle(columns)
    if cycle:
        problems.append(
            ConfigProblem(
                "columns",
                f"dependency cycle {' -> '.join([*cycle, cycle[0]])}",
                "break the cycle: one of these columns must not read the next",
            )
        )
    return problems


def _edges(columns: Sequence[ColumnBase]) -> dict[str, list[str]]:
    names = {c.name for c in columns}
    return {c.name: sorted(r for r in c.references() if r in names and r != c.name) for c in columns}


def find_cycle(columns: Sequence[ColumnBase]) -> list[str] | None:
    """One dependency cycle as a list of column names, or None."""
    edges = _edges(columns)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in edges[name]:
            if state.get(dep) == 1:
                return stack[stack.index(dep) :]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[name] = 2
        return None

    for column in columns:
        if column.name not in state and (found := visit(column.name)):
            return found
    return None


def topological_order(columns: Sequence[ColumnBase]) -> list[str]:
    """Column names so that every column comes after the columns it reads (declaration order breaks ties)."""
    edges = _edges(columns)
    order: list[str] = []
    placed: set[str] = set()
    remaining = [c.name for c in columns]
    while remaining:
        progressed = False
        for name in list(remaining):
            if all(dep in placed for dep in edges[name]):
                order.append(name)
                placed.add(name)
                remaining.remove(name)
                progressed = True
        if not progressed:
            raise ValueError(f"dependency cycle among {remaining}")
    return order
