"""What a run reads besides its config: the seed file, the model files of local providers, custom functions' code.

Owns their identities and the check on resume. An identity is cheap: a file's size, mtime and a hash of its
first and last MiB (a Parquet file's footer, with its row counts and statistics, is in the last), a seed's row
count and schema, a hash of a function's source. They are recorded in the manifest (`inputs`); a resumed or
extended run whose seed or model file changed is refused (its rows would mix two inputs), one whose function
source changed is warned. Must not read a whole file, nor decide anything else about the folder (`resume`).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from pathlib import Path
from typing import Any

from rowloom.config.columns import CustomColumn, ValidationColumn
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import OutputError, RowloomError, RowloomWarning

SAMPLE_BYTES = 1 << 20  # hashed at each end of a file
CONTENT_KEYS = ("size", "sample")  # what says a file's content changed (the mtime alone does not: a copy, a touch)


def file_identity(path: str | Path) -> dict[str, Any]:
    """`{size, mtime_ns, sample}`: the size, the modification time and a hash of the first and last MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
        digest.update(fh.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            fh.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(fh.read(SAMPLE_BYTES))
    return {"size": size, "mtime_ns": mtime_ns, "sample": digest.hexdigest()[:16]}


def seed_identity(config: DatasetConfig, rows: int | None) -> dict[str, Any] | None:
    """The seed file's path, row count, schema and file identity; None without a seed file (a DataFrame seed is
    in the fingerprint by its content)."""
    seed = config.seed
    if seed is None or seed.path is None:
        return None
    if rows is None:  # a caller without a reader (the Ray driver): count them as a run would
        from rowloom.engine.seed_reader import SeedReader

        reader = SeedReader(seed, 0)
        rows = reader.num_rows
        reader.close()
    schema = seed.file_schema()
    path = Path(seed.path).expanduser()
    return {
        "path": seed.path,
        "rows": rows,
        "schema": [f"{field.name}: {field.type}" for field in schema],
        **file_identity(path),
    }


def model_identities(config: DatasetConfig) -> dict[str, dict[str, Any]]:
    """Per local provider that a model uses: the GGUF file it serves and its identity (a missing file is left to
    the server's own message when it starts)."""
    from rowloom.models.local import resolve_model_path

    used = {name for m in config.models for name in m.providers}
    out: dict[str, dict[str, Any]] = {}
    for provider in config.providers:
        if provider.type != "local" or provider.name not in used:
            continue
        try:
            path = resolve_model_path(provider)
            out[provider.name] = {"path": str(path), **file_identity(path)}
        except (RowloomError, OSError):
            continue
    return out


def function_sources(config: DatasetConfig) -> dict[str, dict[str, str]]:
    """Per custom or validation column with a Python function: its name and a hash of its source (functions
    whose source cannot be read, or that cannot be imported, are left to the run's own messages)."""
    from rowloom.engine.generators.custom import function_name, resolve_callable

    out: dict[str, dict[str, str]] = {}
    for column in config.columns:
        if not isinstance(column, CustomColumn | ValidationColumn) or column.function is None:
            continue
        with contextlib.suppress(RowloomError, OSError, TypeError):
            source = inspect.getsource(resolve_callable(column))
            digest = hashlib.sha256(source.encode()).hexdigest()[:16]
            out[column.name] = {"function": function_name(column.function), "source": digest}
    return out


def collect(config: DatasetConfig, seed_rows: int | None = None) -> dict[str, Any]:
    """The `inputs` of a run as the manifest records them (sections without entries are left out)."""
    found = {
        "seed": seed_identity(config, seed_rows),
        "models": model_identities(config),
        "functions": function_sources(config),
    }
    return {key: value for key, value in found.items() if value}


def _folder(location: OutputLocation) -> str:
    text = str(location)
    return text if text.endswith("/") or "?" in text else text + "/"


def _seed_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = []
    if old.get("rows") != new.get("rows"):
        changes.append(f"{old.get('rows')} rows then, {new.get('rows')} now")
    if old.get("schema") != new.get("schema"):
        changes.append(f"columns then: {', '.join(old.get('schema') or [])}; now: {', '.join(new.get('schema') or [])}")
    if not changes and any(old.get(k) != new.get(k) for k in CONTENT_KEYS):
        changes.append(f"{old.get('size')} bytes then, {new.get('size')} now, other content")
    return changes


def check(
    recorded: dict[str, Any] | None, current: dict[str, Any], location: OutputLocation, terms: Terms = CLI_TERMS
) -> None:
    """Refuse (`OutputError`) to continue a run whose seed or local model file changed since `recorded` (a
    manifest's `inputs`; None for a manifest of an earlier version, which recorded none); warn when only a seed's
    mtime or a function's source changed."""
    if not recorded:
        return
    where, output = _folder(location), terms.name("output")
    old_seed, new_seed = recorded.get("seed"), current.get("seed")
    if old_seed and new_seed:
        changes = _seed_changes(old_seed, new_seed)
        if changes:
            raise OutputError(
                f"{where} holds a run of seed file {new_seed['path']}, which has changed since ({'; '.join(changes)})"
                f": resuming would mix rows of two seeds. Restore the file, or use a new {output}"
            )
        if old_seed.get("mtime_ns") != new_seed.get("mtime_ns"):
            warnings.warn(
                f"seed file {new_seed['path']} was modified since {where} was written, but its rows, columns, size "
                f"and sampled bytes are the same; continuing (if its content changed, use a new {output})",
                RowloomWarning,
                stacklevel=2,
            )
    for name, old in (recorded.get("models") or {}).items():
        new = (current.get("models") or {}).get(name)
        if new and any(old.get(k) != new.get(k) for k in CONTENT_KEYS):
            raise OutputError(
                f"{where} holds a run of provider {name!r} serving {old.get('path')} ({old.get('size')} bytes), but "
                f"it now serves {new['path']} ({new['size']} bytes, other content): resuming would mix rows of two "
                f"models. Restore the model file (model_path), or use a new {output}"
            )
    for column, old in (recorded.get("functions") or {}).items():
        new = (current.get("functions") or {}).get(column)
        if new and old.get("source") != new.get("source"):
            warnings.warn(
                f"the source of column {column!r}'s function {new['function']} changed since {where} was written; "
                f"its rows written before keep the old code's values (use a new {output} for rows of one version)",
                RowloomWarning,
                stacklevel=2,
            )


def settle(
    config: DatasetConfig,
    manifest: dict[str, Any] | None,
    location: OutputLocation,
    terms: Terms = CLI_TERMS,
    seed_rows: int | None = None,
) -> dict[str, Any]:
    """`collect` the run's inputs and `check` them against those of the run it continues (`manifest`, None for a
    new run); returns them for the manifest."""
    inputs = collect(config, seed_rows)
    check((manifest or {}).get("inputs"), inputs, location, terms)
    return inputs
