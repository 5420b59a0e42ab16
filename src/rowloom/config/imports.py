"""The user code a config names: the `module:function` of `custom` and `validation` columns.

A config is code: importing a module runs it. This module owns the allow-list (`--allow-import`,
`allow_imports=`), importing each function before a run, checking that it takes the one argument rowloom passes,
and the list of the code a config runs (with its source file). It never calls a user function.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rowloom.config.columns import CustomColumn, ValidationColumn
from rowloom.config.problems import did_you_mean
from rowloom.errors import ConfigProblem


@dataclass(frozen=True)
class UserFunction:
    """One function a config runs: where the config names it, its import path and the file (and line) defining it."""

    where: str  # columns[2] (score).function
    target: str  # mymod:score
    source: str  # /work/mymod.py:3, or "(no source file)"


def import_function(module: str, name: str) -> Any:
    """Import `module` and follow the dotted `name` inside it (a function or a nested attribute)."""
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def is_allowed(module: str, allow_imports: Sequence[str]) -> bool:
    """Whether `module` is one of `allow_imports` or inside one of them (`mypkg` allows `mypkg.cols`)."""
    return any(module == allowed or module.startswith(allowed + ".") for allowed in allow_imports)


def _source(fn: Any) -> str:
    """`file:line` of a function's definition, or the file of its module, or "(no source file)"."""
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:  # a builtin or a C extension
        file = getattr(inspect.getmodule(fn), "__file__", None)
    if not file:
        return "(no source file)"
    try:
        return f"{file}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return file


def _what_it_receives(column: CustomColumn | ValidationColumn) -> tuple[str, str]:
    """(what rowloom passes the function, the parameter name of a fitting definition)."""
    if isinstance(column, CustomColumn) and column.mode == "batch":
        return "one pandas DataFrame (the row group's `inputs`)", "df"
    return "one dict (the row's `inputs`)", "row"


def _refused(where: str, target: str, module: str, allow_imports: Sequence[str], switch: str) -> ConfigProblem:
    listed = ", ".join(allow_imports) or "(nothing)"
    top = module.split(".")[0]
    fix = f"add `{switch} {top}`" if switch.startswith("--") else f"add {top!r} to {switch}"
    return ConfigProblem(
        where,
        f"refused to import {target!r}: module {module!r} is not in {switch} ({listed})",
        f"{fix} if you trust its code, or remove the column",
    )


def _foreign(where: str, target: str, fn: Any, allow_imports: Sequence[str], switch: str) -> ConfigProblem | None:
    """A function an allowed module only re-exports (`mypkg:dumps` after `from json import dumps`): the code that
    would run is the other module's, so it is refused like an import of it."""
    module = getattr(fn, "__module__", None) or type(fn).__module__
    if is_allowed(module, allow_imports):
        return None
    listed = ", ".join(allow_imports)
    fix = f"add `{switch} {module}`" if switch.startswith("--") else f"add {module!r} to {switch}"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return ConfigProblem(
        where,
        f"refused to run {target!r}: it is {name} from module {module!r}, which is not in {switch} ({listed})",
        f"{fix} if you trust its code, or name a function defined in an allowed module",
    )


def _import(where: str, target: str) -> tuple[Any, ConfigProblem | None]:
    """(the function, None) or (None, the problem of importing it)."""
    module, _, name = target.partition(":")
    try:
        found: Any = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            parent, _, leaf = exc.name.rpartition(".")
            fix = (
                f"check the module path: {parent!r} has no module {leaf!r}"
                if parent
                else f"run rowloom in the folder that holds {leaf}.py, or add that folder to PYTHONPATH"
            )
            return None, ConfigProblem(where, f"cannot import {target!r}: no module named {exc.name!r}", fix)
        return None, ConfigProblem(
            where, f"importing {module!r} failed: {exc}", f"install {exc.name!r} or fix the import in {module}"
        )
    except (Exception, SystemExit) as exc:  # the module's own code ran and raised
        return None, ConfigProblem(
            where, f"importing {module!r} raised {type(exc).__name__}: {exc}", f"fix the module {module}"
        )
    for part in name.split("."):
        if not hasattr(found, part):
            known = [n for n in dir(found) if not n.startswith("_")]
            return None, ConfigProblem(
                where,
                f"cannot import {target!r}: {getattr(found, '__name__', module)!r} has no attribute {part!r}",
                f"{did_you_mean(part, known)}check the name after ':'",
            )
        found = getattr(found, part)
    return found, None


def _signature_problem(
    where: str, target: str, fn: Any, column: CustomColumn | ValidationColumn
) -> ConfigProblem | None:
    if not callable(fn):
        return ConfigProblem(where, f"{target!r} is a {type(fn).__name__}, not a function", "name a function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: nothing to check
        return None
    receives, param = _what_it_receives(column)
    try:
        signature.bind(None)
    except TypeError:
        short = target.rpartition(":")[2].rpartition(".")[2]
        return ConfigProblem(
            where,
            f"{target!r} takes {signature} but is called with {receives}",
            f"define it as `def {short}({param}): ...`",
        )
    return None


def user_functions(
    columns: Iterable[Any], *, allow_imports: Sequence[str] | None = None, switch: str = "allow_imports"
) -> tuple[list[UserFunction], list[ConfigProblem]]:
    """Import every function the `columns` name: (the code the config runs, the problems found).

    With `allow_imports`, an import path outside it is refused before anything is imported. A function given as
    a Python callable (the Python API) is the caller's own code: it is listed and checked, never refused.
    """
    code: list[UserFunction] = []
    problems: list[ConfigProblem] = []
    for i, column in enumerate(columns):
        if not isinstance(column, CustomColumn | ValidationColumn) or column.function is None:
            continue
        where = f"columns[{i}] ({column.name}).function"
        if isinstance(column.function, str):
            target = column.function
            module = target.partition(":")[0]
            if allow_imports is not None and not is_allowed(module, allow_imports):
                problems.append(_refused(where, target, module, allow_imports, switch))
                continue
            fn, problem = _import(where, target)
            if problem is None and allow_imports is not None:
                problem = _foreign(where, target, fn, allow_imports, switch)
        else:
            fn, problem = column.function, None
            target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
        if problem is None:
            problem = _signature_problem(where, target, fn, column)
        if problem is not None:
            problems.append(problem)
            continue
        code.append(UserFunction(where, target, _source(fn)))
    return code, problems
