"""The column dependency graph: references resolved to columns, checked for unknown names and cycles.

A reference names a value: a column, a companion output of one (`code__valid`), or a seed column (an input
with no producer among the columns). Pure graph logic; the planner builds tasks from the order it returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from rowloom.config.columns import ColumnBase
from rowloom.config.problems import did_you_mean
from rowloom.errors import ConfigProblem


def producers(columns: Sequence[ColumnBase]) -> dict[str, str]:
    """Value name -> the column that writes it (every column writes itself, some write companions too)."""
    return {out: c.name for c in columns for out in c.outputs()}


def dependency_problems(columns: Sequence[ColumnBase], extra_inputs: frozenset[str] = frozenset()) -> list:
    """Every unknown reference and cycle among `columns`, each as a `ConfigProblem` (empty when sound).

    `extra_inputs` are values that exist before any column runs: the seed's columns.
    """
    problems: list[ConfigProblem] = []
    produced = set(producers(columns))
    names = produced | extra_inputs
    for i, column in enumerate(columns):
        for ref in sorted(column.dependencies() - names):
            guess = did_you_mean(ref, sorted(names - {column.name}))
            if extra_inputs:
                message = f"refers to {ref!r}, which is neither a column nor a seed column"
                fix = guess + (
                    f"correct the name, or add {ref!r} to the seed (seed columns: {', '.join(sorted(extra_inputs))}; "
                    f"columns: {', '.join(sorted(produced)) or '(none)'})"
                )
            else:
                message = f"refers to {ref!r}, which is not a column"
                fix = f"{guess}define a column named {ref!r} or correct the name" + (
                    f" (known: {', '.join(sorted(names))})" if names else ""
                )
            problems.append(ConfigProblem(f"columns[{i}] ({column.name})", message, fix))
        if set(column.outputs()) & column.dependencies():
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
    made_by = producers(columns)
    return {
        c.name: sorted({made_by[r] for r in c.dependencies() if r in made_by and made_by[r] != c.name}) for c in columns
    }


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
