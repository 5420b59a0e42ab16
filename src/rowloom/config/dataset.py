"""`DatasetConfig`: providers, models, seed, columns, processors and run settings, with YAML/JSON load and save.

Cross-field checks (unknown model, duplicate names, unknown references, cycles, seed columns, processor names)
live in `config.checks`, run by `DatasetConfig(...)` and by `rowloom validate` alike; a config that fails is
looked at again entry by entry, so every problem is reported at once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.checks import collect_problems, cross_problems
from rowloom.config.columns import ColumnConfig, CustomColumn, ValidationColumn
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.problems import problems_from_validation
from rowloom.config.processors import ExportConfig, ProcessorConfig
from rowloom.config.request_admission import reject_legacy_throttle
from rowloom.config.run import RunConfig
from rowloom.config.seed import SeedConfig
from rowloom.errors import ConfigError, ConfigProblem

MAX_CONFIG_BYTES = 5 * 1024 * 1024
MAX_CONFIG_DEPTH = 64  # levels of nested mappings/lists; JSON Schemas of real configs use far fewer
MAX_CONFIG_VALUES = 1_000_000  # values after anchors and aliases are expanded


class DatasetConfig(ConfigModel):
    """Everything needed to generate a dataset: where the models are and which columns to make."""

    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    seed: SeedConfig | None = Field(None, description="An existing dataset whose columns feed the generated ones.")
    columns: list[ColumnConfig] = Field(min_length=1, description="Columns in any order; dependencies decide.")
    processors: list[ProcessorConfig] = Field(
        default_factory=list, description="Applied in order to each complete row group before it is written."
    )
    export: ExportConfig | None = Field(None, description="Also write the finished dataset as (chat) JSONL.")
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="before")
    @classmethod
    def _no_throttle(cls, data: Any) -> Any:
        return reject_legacy_throttle(data, path="throttle")

    @model_validator(mode="after")
    def _cross_checks(self) -> DatasetConfig:
        problems = self.cross_problems()
        if problems:
            raise ConfigError(problems)
        return self

    def cross_problems(self) -> list[ConfigProblem]:
        """Problems that involve more than one field."""
        return cross_problems(
            providers=self.providers,
            models=self.models,
            seed=self.seed,
            columns=self.columns,
            processors=self.processors,
            export=self.export,
            run=self.run,
        )

    def with_seed(self, source: str | Path | Any, **settings: Any) -> DatasetConfig:
        """A copy of this config reading `source` (a file path, or a pandas/polars DataFrame) as its seed.

        `settings` are the other `seed:` fields: sampling, with_replacement, seed, index_range, partition, columns.
        The copy is validated like any config (its columns may read only the new seed's columns). To start from
        columns that need the seed, declare both at once: `seed:` in YAML, or `DatasetBuilder().with_seed(df)`.
        """
        if isinstance(source, str | Path):
            seed = SeedConfig(path=str(source), **settings)
        else:
            seed = SeedConfig(data=source, **settings)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, "seed": seed})

    # ------------------------------------------------------------ loading and saving

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> DatasetConfig:
        """Validate a plain dict; every problem becomes one `ConfigError` naming field paths and fixes."""
        if not isinstance(data, dict):
            kind = type(data).__name__
            what = "the config is empty" if data is None else f"the top level must be a mapping, not {kind}"
            raise ConfigError(ConfigProblem(source, what, "write a mapping with at least `columns:` (see examples/)"))
        try:
            return cls.model_validate(data)
        except (ValidationError, ConfigError) as exc:
            first = problems_from_validation(exc, data, cls) if isinstance(exc, ValidationError) else exc.problems
        # The first error may hide others (a column that does not parse skips every cross-field check): look again,
        # entry by entry, so one pass reports them all.
        raise ConfigError(collect_problems(cls, data) or first) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetConfig:
        """Load a YAML (or JSON) file."""
        return cls.from_dict(load_yaml_file(path), source=str(path))

    @classmethod
    def from_yaml_string(cls, text: str) -> DatasetConfig:
        """Load YAML (or JSON) text."""
        return cls.from_dict(_parse_yaml(text, "config"))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `from_dict` reads back to an equal config."""
        if self.seed is not None and self.seed.in_memory:
            raise ConfigError(
                ConfigProblem(
                    "seed",
                    "is an in-memory DataFrame, which cannot be saved",
                    "write it to a file (df.to_parquet('seed.parquet')) and use with_seed('seed.parquet')",
                )
            )
        for i, column in enumerate(self.columns):
            if isinstance(column, CustomColumn | ValidationColumn) and callable(column.function):
                raise ConfigError(
                    ConfigProblem(
                        f"columns[{i}] ({column.name}).function",
                        "holds a Python callable, which cannot be saved",
                        "give an import path 'package.module:function' instead",
                    )
                )
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML; also written to `path` when given."""
        text = yaml.dump(self.to_dict(), Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # ------------------------------------------------------------ identity

    def fingerprint_fields(self) -> dict[str, Any]:
        """The parts of the config that decide the rows (endpoints and tuning knobs are left out)."""
        columns = []
        for column in self.columns:
            if isinstance(column, CustomColumn | ValidationColumn) and callable(column.function):
                fn = column.function
                data = column.model_dump(mode="json", by_alias=True, exclude={"scheduling", "function"})
                data["function"] = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
            else:
                data = column.model_dump(mode="json", by_alias=True, exclude={"scheduling"})
            if data.get("skip_when") is None and data.get("propagate_skip") is True:
                del data["skip_when"], data["propagate_skip"]  # no skip: the fingerprint of earlier versions
            columns.append(_keep_key_order(data))
        fields = {
            "columns": columns,
            "models": [m.model_dump(mode="json", include={"alias", "model", "inference"}) for m in self.models],
            "run": self.run.model_dump(mode="json", include={"row_group_size", "seed"}),
        }
        # Added only when used, so configs without them keep the fingerprints of earlier versions.
        if self.seed is not None:
            fields["seed"] = self.seed.fingerprint_fields()
        if self.processors:
            fields["processors"] = [_keep_key_order(p.model_dump(mode="json")) for p in self.processors]
        return fields

    def fingerprint(self) -> str:
        """A stable hash of `fingerprint_fields`: equal for configs that produce the same rows."""
        canonical = json.dumps(self.fingerprint_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # ------------------------------------------------------------ lookups

    def model(self, alias: str) -> ModelConfig:
        """The model with this alias."""
        return next(m for m in self.models if m.alias == alias)

    def provider(self, name: str) -> ProviderConfig:
        """The provider with this name."""
        return next(p for p in self.providers if p.name == name)


class _ConfigDumper(yaml.SafeDumper):
    """Readable YAML (non-ASCII text as is) that reads back to the same values."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # YAML folds NEL and the Unicode line/paragraph separators inside plain and single-quoted scalars, which
    # PyYAML may still choose for them with allow_unicode: double quotes escape them (\N, \L, \P).
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ConfigDumper.add_representer(str, _represent_str)


ORDERED_FIELDS = ("schema", "scores", "fields")
"""User mappings whose key order shapes the rows: a reply schema's properties (struct field order, and what the
model is asked for), a judge's score scale (its prompt), a schema transform's output fields."""


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return [[key, _ordered(item)] for key, item in value.items()]
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def _keep_key_order(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its ORDERED_FIELDS as [key, value] pairs, so the fingerprint's sorted dump keeps their order."""
    for name in ORDERED_FIELDS:
        if isinstance(data.get(name), dict):
            data[name] = _ordered(data[name])
    return data


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML/JSON file with clear errors for missing, huge, non-UTF-8 or malformed files."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(ConfigProblem(str(p), "file not found", "check the path"))
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            ConfigProblem(
                str(p),
                f"file is {size / 1e6:.1f} MB, larger than the {MAX_CONFIG_BYTES // 2**20} MiB a config may be",
                "put large data in a seed dataset file, not in the config",
            )
        )
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            ConfigProblem(f"{p}:{line}", f"not valid UTF-8 (byte {exc.start})", "save the file as UTF-8")
        ) from None
    return _parse_yaml(text, str(p))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(ConfigProblem(where, f"invalid YAML: {problem}", "fix the YAML syntax there")) from None
    except RecursionError:
        data = None
        depth = MAX_CONFIG_DEPTH + 1
    else:
        depth = _check_size(data, source)
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(
            ConfigProblem(source, f"values are nested more than {MAX_CONFIG_DEPTH} levels deep", "flatten the config")
        )
    return data


def _check_size(data: Any, source: str) -> int:
    """The nesting depth of parsed YAML; raise if anchors and aliases expand it past `MAX_CONFIG_VALUES`.

    YAML aliases share one object, so a small file can stand for billions of values ("billion laughs") that
    validation, saving or fingerprinting would then walk one by one.
    """
    count, deepest = 0, 0
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                ConfigProblem(
                    source,
                    f"expands to more than {MAX_CONFIG_VALUES:,} values (anchors and aliases repeated)",
                    "write the values out or repeat aliases less",
                )
            )
        if depth > MAX_CONFIG_DEPTH:
            break
        if isinstance(node, dict):
            stack += [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]
    return deepest
