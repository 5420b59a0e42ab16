"""Every problem of a config in one pass: each entry parsed on its own, then every cross-field check.

`collect_problems` parses each provider, model, column and processor, and each other section, separately, so a
misspelled column type hides neither an unknown reference nor an unknown model: an entry that does not parse
still lends its name to the cross-field checks. `cross_problems` holds those checks (names, models, providers,
references, cycles, seed columns and rows, processors) and is what `DatasetConfig` itself runs. `check_config`
adds the user code a config imports (`config.imports`); `rowloom validate`, `run` and `preview` all use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from rowloom.config.columns import COLUMN_TYPES, ColumnConfig
from rowloom.config.dag import dependency_problems
from rowloom.config.imports import UserFunction, user_functions
from rowloom.config.models import api_problems
from rowloom.config.pricing import budget_warnings, pricing_problems
from rowloom.config.problems import did_you_mean, problems_from_errors, show_key, union_members
from rowloom.config.processors import processor_problems
from rowloom.config.request_admission import reject_legacy_throttle
from rowloom.config.seed import SEED_TASK
from rowloom.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from rowloom.config.dataset import DatasetConfig

#: Sections that are lists of named entries: each entry is parsed on its own.
_LISTS = ("providers", "models", "columns", "processors")


@dataclass(frozen=True)
class Unparsed:
    """An entry that did not parse: its name (a model's alias), and the names it refers to (a model's provider,
    a column's model), still take part in the cross-field checks."""

    name: str | None = None
    alias: str | None = None
    provider: str | None = None
    model_alias: str | None = None
    refs: frozenset[str] = frozenset()
    drop: bool = False

    def outputs(self) -> tuple[str, ...]:
        return (self.name,) if self.name else ()

    def dependencies(self) -> frozenset[str]:
        return self.refs


def _unparsed(item: Any) -> Unparsed:
    if not isinstance(item, Mapping):
        return Unparsed()
    keys = {"name": "name", "alias": "alias", "provider": "provider", "model": "model_alias"}
    return Unparsed(**{field: item[key] for key, field in keys.items() if isinstance(item.get(key), str)})


@functools.cache
def _column_classes() -> dict[str, type]:
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in union_members(ColumnConfig)}


def _references_of(item: Mapping[str, Any]) -> frozenset[str]:
    """What a column of a known type that did not parse reads, from its raw fields (templates, inputs), as far
    as they can be read; nothing when they cannot."""
    kind = _column_classes().get(str(item.get("type")))
    if kind is None:
        return frozenset()
    fields = {}  # only the fields that are valid on their own (`inputs: abc` is not three inputs)
    for name, info in kind.model_fields.items():
        key = name if name in item else info.alias
        if key in item:
            try:
                fields[name] = TypeAdapter(info.annotation).validate_python(item[key])
            except Exception:  # a value of the wrong shape is left out, whatever pydantic raises
                continue
    try:
        return frozenset(kind.model_construct(**fields).dependencies())
    except Exception:  # a template that does not compile, a required field missing: nothing to check yet
        return frozenset()


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def _parse(tp: Any, value: Any, data: Any, prefix: tuple[Any, ...], root: Any) -> tuple[Any, list[ConfigProblem]]:
    """(the parsed value or None, its problems)."""
    try:
        return _adapter(tp).validate_python(value), []
    except ValidationError as exc:
        return None, problems_from_errors(exc.errors(include_url=False), data, root, prefix)
    except ConfigError as exc:  # a validator that names its own path (a legacy section)
        return None, exc.problems


def _parse_column(value: Any, data: Any, i: int, root: Any) -> tuple[Any, list[ConfigProblem]]:
    """A column; one whose type is a near miss is also parsed as the type meant, for its references and model."""
    column, problems = _parse(ColumnConfig, value, data, ("columns", i), root)
    tag = value.get("type") if isinstance(value, Mapping) else None
    if column is not None or not isinstance(tag, str) or not any(p.path.endswith(".type") for p in problems):
        return column, problems
    meant = difflib.get_close_matches(tag, COLUMN_TYPES, n=1, cutoff=0.6)
    if not meant:
        return None, problems
    column, more = _parse(ColumnConfig, {**value, "type": meant[0]}, data, ("columns", i), root)
    for problem in more:  # the fields the meant type would still miss, said as such
        problem.message = f"{problem.message} (as {meant[0]})"
    return column, problems + more


def parse_sections(root: type[DatasetConfig], data: Mapping[str, Any]) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """Every section of `data` parsed as far as it goes: (section -> value, with `Unparsed` list entries; problems).

    A section that does not parse at all is missing from the result.
    """
    problems: list[ConfigProblem] = []
    fields = root.model_fields
    if "throttle" in data:
        try:
            reject_legacy_throttle(data)
        except ConfigError as exc:
            problems += exc.problems
    for key in data:
        if key not in fields and key != "throttle":
            shown = show_key(key)
            guess = did_you_mean(str(key), fields, quote="`")
            fix = f"{guess}(or remove `{shown}`)" if guess else f"remove `{shown}` or check its spelling"
            problems.append(ConfigProblem(shown, "unknown section", fix))
    parsed: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in data:
            if info.is_required():
                problems.append(ConfigProblem(name, "missing", f"add `{name}:` (see examples/)"))
            else:
                parsed[name] = info.get_default(call_default_factory=True)
            continue
        value = data[name]
        if name in _LISTS and isinstance(value, list) and value:
            item_type = typing.get_args(info.annotation)[0]
            entries = []
            for i, item in enumerate(value):
                if name == "columns":
                    entry, found = _parse_column(item, data, i, root)
                else:
                    entry, found = _parse(item_type, item, data, (name, i), root)
                problems += found
                if entry is None:
                    entry = _unparsed(item)
                    if name == "columns" and isinstance(item, Mapping):
                        entry = dataclasses.replace(entry, refs=_references_of(item))
                entries.append(entry)
            parsed[name] = entries
            continue
        tp = typing.Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        entry, found = _parse(tp, value, data, (name,), root)
        problems += found
        if not found:
            parsed[name] = entry
    return parsed, problems


def collect_problems(root: type[DatasetConfig], data: Mapping[str, Any]) -> list[ConfigProblem]:
    """Every problem of the config `data` (a mapping parsed from YAML), in one pass."""
    parsed, problems = parse_sections(root, data)
    order = {name: rank for rank, name in enumerate(root.model_fields)}

    def position(problem: ConfigProblem) -> tuple[int, int]:  # config order: section, then entry
        found = re.match(r"(\w+)(?:\[(\d+)\])?", problem.path)
        if found is None:
            return len(order), 0
        return order.get(found[1], len(order)), int(found[2] or 0)

    processors = parsed.get("processors")
    if processors is not None and any(isinstance(p, Unparsed) for p in processors):
        processors = None  # the names a processor passes on are unknown: their checks wait for a fix
    problems += cross_problems(
        providers=parsed.get("providers", []),
        models=parsed.get("models", []),
        seed=parsed.get("seed"),
        seed_known="seed" in parsed,
        columns=parsed.get("columns", []),
        processors=processors,
        export=parsed.get("export"),
        run=parsed.get("run"),
    )
    return sorted(problems, key=position)


def cross_problems(
    *,
    providers: Sequence[Any],
    models: Sequence[Any],
    seed: Any,
    columns: Sequence[Any],
    processors: Sequence[Any] | None,
    export: Any,
    run: Any = None,
    seed_known: bool = True,
) -> list[ConfigProblem]:
    """Problems that involve more than one field. Entries may be `Unparsed`; with `seed_known` False (the seed
    did not parse) references are not checked, and with `processors` None the processors are not."""
    problems: list[ConfigProblem] = []
    problems += _duplicates("providers", [p.name for p in providers], "name")
    problems += _duplicates("models", [m.alias for m in models], "alias")
    problems += _duplicates("columns", [c.name for c in columns], "name")
    provider_names = sorted({p.name for p in providers if p.name})
    for i, model in enumerate(models):
        endpoints = getattr(model, "endpoints", None) or ()
        named = [(f"endpoints[{j}].provider", e.provider) for j, e in enumerate(endpoints)]
        for where, name in [("provider", getattr(model, "provider", None)), *named]:
            if name is not None and name not in provider_names:
                problems.append(
                    ConfigProblem(
                        f"models[{i}] ({model.alias}).{where}",
                        f"provider {name!r} is not defined",
                        f"{did_you_mean(name, provider_names)}add it under `providers` or use one of: "
                        f"{', '.join(provider_names) or '(none)'}",
                    )
                )
    problems += pricing_problems(models, columns, getattr(run, "budget", None))
    problems += api_problems(providers, models, columns)
    aliases = sorted({m.alias for m in models if m.alias})
    for i, column in enumerate(columns):
        alias = column.model_alias
        if alias is not None and alias not in aliases:
            problems.append(
                ConfigProblem(
                    f"columns[{i}] ({column.name}).model",
                    f"model alias {alias!r} is not defined",
                    f"{did_you_mean(alias, aliases)}add it under `models` or use one of: "
                    f"{', '.join(aliases) or '(none)'}",
                )
            )
    if not seed_known:
        return problems
    seed_columns: list[str] = []
    if seed is not None:
        try:
            seed_columns = list(seed.schema().names)
            problems += seed.window_problems()
        except ConfigError as exc:
            return problems + exc.problems  # references cannot be checked without the seed's columns
    problems += _output_clashes(columns, seed_columns)
    problems += dependency_problems(columns, frozenset(seed_columns))
    if processors is not None:
        written = [*seed_columns, *(out for c in columns if not c.drop for out in c.outputs())]
        problems += processor_problems(processors, written, export)
    return problems


def _output_clashes(columns: Sequence[Any], seed_columns: list[str]) -> list[ConfigProblem]:
    """Values written twice: a companion output (`code__valid`) or a seed column that a column also names.

    Two columns of the same name are left to the duplicate-name check.
    """
    problems: list[ConfigProblem] = []
    owner: dict[str, tuple[str, bool]] = {name: ("the seed", False) for name in seed_columns}
    owner.setdefault(SEED_TASK, ("rowloom (reserved for the seed task)", False))
    for i, column in enumerate(columns):
        for out in column.outputs():
            found = owner.get(out)
            if found is not None and not (found[1] and out == column.name):
                problems.append(
                    ConfigProblem(
                        f"columns[{i}] ({column.name})",
                        f"writes {out!r}, which {found[0]} already writes",
                        "rename the column" + (" or leave it out of seed.columns" if found[0] == "the seed" else ""),
                    )
                )
        for out in column.outputs():
            owner.setdefault(out, (f"columns[{i}] ({column.name})", out == column.name))
    return problems


def _duplicates(section: str, names: list[str | None], field: str) -> list[ConfigProblem]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            out.append(
                ConfigProblem(
                    f"{section}[{i}].{field}",
                    f"{name!r} is already used by {section}[{seen[name]}]",
                    f"give every entry in `{section}` a unique {field}",
                )
            )
        else:
            seen[name] = i
    return out


# ------------------------------------------------------------------ before a run


@dataclass
class ConfigCheck:
    """What `check_config` found: the config (None when it has problems), every problem, and the code it runs."""

    config: DatasetConfig | None
    problems: list[ConfigProblem] = field(default_factory=list)
    code: list[UserFunction] = field(default_factory=list)


def check_config(
    data: Any, source: str = "config", *, allow_imports: Sequence[str] | None = None, switch: str = "allow_imports"
) -> ConfigCheck:
    """Every problem of a config (a mapping parsed from YAML, or a `DatasetConfig`), its user code imported.

    Importing runs the modules a config names: with `allow_imports`, a module outside the list is refused
    before it is imported (`switch` is how the caller spells the list in the fix). `run`, `preview` and
    `validate` all check a config this way before anything starts.
    """
    from rowloom.config.dataset import DatasetConfig

    if isinstance(data, DatasetConfig):
        config, problems, columns = data, [], list(data.columns)
    else:
        try:
            config, problems = DatasetConfig.from_dict(data, source), []
        except ConfigError as exc:
            config, problems = None, list(exc.problems)
        if config is not None:
            columns = list(config.columns)
        elif isinstance(data, Mapping):
            columns = parse_sections(DatasetConfig, data)[0].get("columns", [])
        else:
            columns = []
    code, code_problems = user_functions(columns, allow_imports=allow_imports, switch=switch)
    problems += code_problems
    return ConfigCheck(None if problems else config, problems, code)


def config_warnings(config: Any) -> list[str]:
    """What a valid config may not do as its author expects: a budget that is not a hard limit, a pool whose
    endpoints serve different model ids (its column's outputs then mix models)."""
    found = budget_warnings(config)
    used = {c.model_alias for c in config.columns if c.model_alias}
    for i, model in enumerate(config.models):
        ids = sorted({m.model.model for m in model.members()})
        if model.alias in used and len(ids) > 1:
            found.append(
                f"models[{i}] ({model.alias}).endpoints serve different model ids ({', '.join(ids)}): the rows of "
                f"its columns mix models; give every endpoint the same model, or set record_endpoint: true on "
                "its columns to know which served each cell"
            )
    return found
