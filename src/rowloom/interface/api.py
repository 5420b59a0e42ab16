"""The Python facade: `generate`, `agenerate` and `preview`.

Thin: loads configs, opens event sinks, runs `engine.job.run_job`; everything else lives below.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rowloom.config.dataset import DatasetConfig
from rowloom.engine.job import JobResult, run_job
from rowloom.engine.storage import ResumeMode
from rowloom.errors import RowloomError
from rowloom.observe.sinks import EventSink, JsonlSink

if TYPE_CHECKING:
    import pandas as pd

ConfigLike = DatasetConfig | str | Path


def load_config(config: ConfigLike) -> DatasetConfig:
    """A `DatasetConfig` from a config object or a YAML/JSON path."""
    return config if isinstance(config, DatasetConfig) else DatasetConfig.from_yaml(config)


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RowloomError(
        f"rowloom.{name}() cannot run inside a running event loop (e.g. Jupyter); "
        f"use `await rowloom.a{name}(...)` there"
    )


async def agenerate(
    config: ConfigLike,
    num_records: int,
    output: str | Path,
    *,
    resume: ResumeMode = "auto",
    events: str | Path | EventSink | None = None,
) -> JobResult:
    """Generate `num_records` rows into the folder `output` (Parquet row groups + manifest + summary)."""
    cfg = load_config(config)
    sink = JsonlSink(events) if isinstance(events, str | Path) else events
    return await run_job(cfg, num_records, output=output, resume=resume, sink=sink)


def generate(
    config: ConfigLike,
    num_records: int,
    output: str | Path,
    *,
    resume: ResumeMode = "auto",
    events: str | Path | EventSink | None = None,
) -> JobResult:
    """Blocking form of `agenerate`; returns a result whose `to_pandas()` reads the rows back."""
    _no_running_loop("generate")
    return asyncio.run(agenerate(config, num_records, output, resume=resume, events=events))


async def apreview(config: ConfigLike, num_records: int = 5) -> pd.DataFrame:
    """Generate a few rows in memory (no files) and return them as a DataFrame."""
    result = await run_job(load_config(config), num_records, output=None)
    return result.to_pandas()


def preview(config: ConfigLike, num_records: int = 5) -> pd.DataFrame:
    """Blocking form of `apreview`."""
    _no_running_loop("preview")
    return asyncio.run(apreview(config, num_records))
