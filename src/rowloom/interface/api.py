"""The Python facade: `generate`, `agenerate` and `preview`.

Thin: loads configs, opens event sinks, runs `engine.job.run_job`; everything else lives below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rowloom.concurrency.loops import run as run_loop
from rowloom.config.checks import check_config
from rowloom.config.dataset import DatasetConfig, load_yaml_file
from rowloom.engine.job import JobResult, run_job
from rowloom.engine.storage import ResumeMode
from rowloom.engine.terms import PYTHON_TERMS
from rowloom.errors import ConfigError, RowloomError
from rowloom.observe.sinks import EventSink, JsonlSink

if TYPE_CHECKING:
    import pandas as pd

ConfigLike = DatasetConfig | str | Path
Executor = Literal["local", "ray"]


def load_config(config: ConfigLike, allow_imports: Sequence[str] | None = None) -> DatasetConfig:
    """A `DatasetConfig` from a config object or a YAML/JSON path, every problem reported at once.

    The functions its custom and validation columns name are imported and checked here, before anything starts
    (a config is code: importing runs it). With `allow_imports` (module names), an import path outside those
    modules and their submodules is refused before it is imported.
    """
    if isinstance(allow_imports, str):  # a bare 'mypkg' would allow every module whose name is one of its letters
        allow_imports = [allow_imports]
    data = config if isinstance(config, DatasetConfig) else load_yaml_file(config)
    check = check_config(data, str(config), allow_imports=allow_imports, switch="allow_imports")
    if check.config is None:
        raise ConfigError(check.problems)
    return check.config


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RowloomError(
        f"rowloom.{name}() cannot run inside a running event loop (e.g. Jupyter); "
        f"use `await rowloom.a{name}(...)` there"
    )


def _prepare(
    config: ConfigLike, events: str | Path | EventSink | None, executor: str, allow_imports: Sequence[str] | None
) -> tuple[DatasetConfig, EventSink | None]:
    """The config and the event sink of a run, after checking the executor name."""
    if executor not in ("local", "ray"):
        raise RowloomError(f"executor must be 'local' or 'ray', not {executor!r}")
    return load_config(config, allow_imports), JsonlSink(events) if isinstance(events, str | Path) else events


async def agenerate(
    config: ConfigLike,
    num_records: int,
    output: str | Path,
    *,
    resume: ResumeMode = "auto",
    events: str | Path | EventSink | None = None,
    executor: Executor = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    allow_imports: Sequence[str] | None = None,
) -> JobResult:
    """Generate `num_records` rows into the folder `output` (Parquet row groups + manifest + summary): a local
    path or any `pyarrow.fs` URI (`s3://bucket/prefix`, `gs://…`).

    `executor="ray"` spreads row groups over `workers` Ray actors (a local Ray instance unless `ray_address`).
    `allow_imports=["mypkg"]` refuses a config whose custom or validation columns import from any other module
    (a config is code; see `load_config`).

    A folder that already holds this complete run is left untouched and its rows are returned
    (`result.generated` is False, `result.message` says so); a run of the same config with fewer records is
    extended to `num_records` (the rows already written stay as they are).
    """
    cfg, sink = _prepare(config, events, executor, allow_imports)
    if executor == "ray":
        return await asyncio.to_thread(_run_on_ray, cfg, num_records, output, resume, sink, ray_address, workers)
    return await run_job(cfg, num_records, output=output, resume=resume, sink=sink, terms=PYTHON_TERMS)


def _run_on_ray(cfg, num_records, output, resume, sink, ray_address, workers) -> JobResult:
    """Dispatch to the Ray executor (imported only here: Ray is an optional extra)."""
    from rowloom.engine.distributed.ray_executor import run_distributed

    return run_distributed(
        cfg,
        num_records,
        output=output,
        resume=resume,
        sink=sink,
        workers=workers,
        ray_address=ray_address,
        terms=PYTHON_TERMS,
    )


def generate(
    config: ConfigLike,
    num_records: int,
    output: str | Path,
    *,
    resume: ResumeMode = "auto",
    events: str | Path | EventSink | None = None,
    executor: Executor = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    allow_imports: Sequence[str] | None = None,
) -> JobResult:
    """Blocking form of `agenerate`; returns a result whose `to_pandas()` reads the rows back."""
    _no_running_loop("generate")
    if executor == "ray":  # Ray is driven from this thread, outside any event loop
        cfg, sink = _prepare(config, events, executor, allow_imports)
        return _run_on_ray(cfg, num_records, output, resume, sink, ray_address, workers)
    return run_loop(
        agenerate(
            config, num_records, output, resume=resume, events=events, executor=executor, allow_imports=allow_imports
        )
    )


async def apreview(
    config: ConfigLike, num_records: int = 5, *, allow_imports: Sequence[str] | None = None
) -> pd.DataFrame:
    """Generate a few rows in memory (no files) and return them as a DataFrame."""
    result = await run_job(load_config(config, allow_imports), num_records, output=None)
    return result.to_pandas()


def preview(config: ConfigLike, num_records: int = 5, *, allow_imports: Sequence[str] | None = None) -> pd.DataFrame:
    """Blocking form of `apreview`."""
    _no_running_loop("preview")
    return run_loop(apreview(config, num_records, allow_imports=allow_imports))
