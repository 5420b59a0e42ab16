"""`DatasetBuilder`: a `DatasetConfig` assembled step by step in Python, validated exactly as YAML is.

    config = (
        rowloom.DatasetBuilder(providers=[{"name": "p", "base_url": "http://127.0.0.1:8000/v1"}],
                               models=[{"alias": "m", "provider": "p", "model": "gpt-x"}])
        .with_seed("docs.parquet", sampling="shuffle")
        .add_column("summary", "llm_text", model="m", prompt="Summarise: {{ text }}")
        .build()
    )

Every step accepts the same fields as the YAML section (a dict, keyword arguments, or the config object), and
`build()` reports every problem at once with field paths, like `DatasetConfig.from_yaml`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rowloom.config.dataset import DatasetConfig
from rowloom.config.problems import problems_from_validation
from rowloom.config.seed import SeedConfig
from rowloom.errors import ConfigError, ConfigProblem


def _entry(item: Any, fields: dict[str, Any], what: str) -> Any:
    if item is not None and fields:
        raise TypeError(f"{what}: give a {what} object/dict or keyword fields, not both")
    if item is None:
        return dict(fields)
    if isinstance(item, BaseModel | Mapping):
        return item
    raise TypeError(f"{what}: expected a mapping or a config object, not {type(item).__name__}")


class DatasetBuilder:
    """Collects providers, models, a seed, columns, processors, an export and run settings; `build()` validates."""

    def __init__(
        self,
        models: Iterable[Any] = (),
        providers: Iterable[Any] = (),
        *,
        run: Mapping[str, Any] | BaseModel | None = None,
    ):
        self._providers: list[Any] = list(providers)
        self._models: list[Any] = list(models)
        self._columns: list[Any] = []
        self._processors: list[Any] = []
        self._seed: Any = None
        self._export: Any = None
        self._run: Any = run

    def add_provider(self, provider: Any = None, /, **fields: Any) -> DatasetBuilder:
        """Add an OpenAI-compatible endpoint (`name`, `base_url`, `api_key_env`, ...)."""
        self._providers.append(_entry(provider, fields, "provider"))
        return self

    def add_model(self, model: Any = None, /, **fields: Any) -> DatasetBuilder:
        """Add a model alias (`alias`, `provider`, `model`, `inference`, ...)."""
        self._models.append(_entry(model, fields, "model"))
        return self

    def add_column(self, column: Any = None, type: str | None = None, /, **fields: Any) -> DatasetBuilder:
        """Add a column: `add_column("name", "llm_text", prompt=...)`, a dict, or a column object."""
        if isinstance(column, str):
            fields = {"name": column, **({"type": type} if type is not None else {}), **fields}
            column = None
        elif type is not None:
            raise TypeError("add_column: give the type as the second argument only after a column name")
        self._columns.append(_entry(column, fields, "column"))
        return self

    def add_processor(self, processor: Any = None, /, **fields: Any) -> DatasetBuilder:
        """Add a processor (`type: drop_columns | rename_columns | schema_transform`), applied in order."""
        self._processors.append(_entry(processor, fields, "processor"))
        return self

    def with_seed(self, source: str | Path | Any, **settings: Any) -> DatasetBuilder:
        """Read `source` (a file path, or a pandas/polars DataFrame) as the seed; `settings` as under `seed:`."""
        if isinstance(source, SeedConfig):
            self._seed = source
        elif isinstance(source, str | Path):
            self._seed = {"path": str(source), **settings}
        else:
            self._seed = SeedConfig(data=source, **settings)
        return self

    def with_export(self, **fields: Any) -> DatasetBuilder:
        """Also write the finished dataset as JSONL (`format`, `path`, `messages_column`)."""
        self._export = dict(fields)
        return self

    def with_run(self, **fields: Any) -> DatasetBuilder:
        """Set run settings (`row_group_size`, `seed`, ...); repeated calls merge."""
        current = self._run
        if isinstance(current, BaseModel):
            current = current.model_dump(exclude_unset=True)
        self._run = {**(current or {}), **fields}
        return self

    def build(self) -> DatasetConfig:
        """The `DatasetConfig`; every problem is reported at once as a `ConfigError` with field paths."""
        data: dict[str, Any] = {"providers": self._providers, "models": self._models, "columns": self._columns}
        if self._seed is not None:
            data["seed"] = self._seed
        if self._processors:
            data["processors"] = self._processors
        if self._export is not None:
            data["export"] = self._export
        if self._run is not None:
            data["run"] = self._run
        if not self._columns:
            raise ConfigError(ConfigProblem("columns", "no columns", "add at least one with add_column(...)"))
        try:
            return DatasetConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems_from_validation(exc, _plain(data))) from None


def _plain(data: Any) -> Any:
    """The builder's data with config objects as dicts, so error paths can name columns."""
    if isinstance(data, BaseModel):
        return data.model_dump(by_alias=True)
    if isinstance(data, Mapping):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data
