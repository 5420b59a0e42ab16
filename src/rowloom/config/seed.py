"""`SeedConfig`: an existing dataset (Parquet, CSV, JSONL or a DataFrame) whose rows feed the generated columns.

Owns the seed's settings, which rows of the seed a run may use, and the seed's column names and Arrow types
(read from file metadata or the first block only, never the whole file). Streaming the rows is the engine's job
(`rowloom.engine.seed_reader`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.columns import ColumnBase
from rowloom.config.scheduling import ResourceClass
from rowloom.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:  # pyarrow is imported only when a seed is used: `import rowloom.config` stays light
    import pyarrow as pa

SeedFormat = Literal["parquet", "csv", "jsonl"]
_EXTENSIONS: dict[str, SeedFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
#: Bytes of a CSV/JSONL seed read to infer its column types (the rest must fit them).
INFER_BYTES = 1 << 20
#: The name of the plan's seed task; its outputs are the seed's columns.
SEED_TASK = "__seed__"


class SeedPartition(ConfigModel):
    """Part `index` of `count` contiguous, near-equal parts of the seed (or of its `index_range`)."""

    index: int = Field(ge=0, description="Which part, from 0.")
    count: int = Field(ge=1, description="How many parts the seed is split into.")

    @model_validator(mode="after")
    def _inside(self) -> SeedPartition:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}; parts are numbered 0..count-1")
        return self


class SeedConfig(ConfigModel):
    """Where the seed rows come from and how output rows map onto them.

    Output row `i` reads seed row `f(i)`, a pure function of these settings, the seed's row count and the run
    seed, so a resumed run reads exactly the rows it would have read.
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, arbitrary_types_allowed=True
    )

    path: str | None = Field(None, description="Parquet, CSV or JSONL file (relative paths: from the current dir).")
    format: SeedFormat | None = Field(None, description="File format; unset = from the extension.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter ('\\t' for .tsv).")
    sampling: Literal["ordered", "shuffle"] = Field("ordered", description="Seed rows in file order, or shuffled.")
    with_replacement: bool = Field(
        False,
        description="Ordered: cycle through the seed again; shuffle: independent uniform draws. Allows more "
        "records than seed rows.",
    )
    seed: int | None = Field(None, description="Seed of the shuffle; unset = the run's seed (kept by resume).")
    index_range: tuple[int, int] | None = Field(
        None, description="[start, end): only these seed rows (0-based, end exclusive)."
    )
    partition: SeedPartition | None = Field(None, description="Only this part of the seed (after `index_range`).")
    columns: list[str] | None = Field(None, min_length=1, description="Seed columns to use; unset = all.")
    data: Any = Field(None, exclude=True, description="An in-memory table (Python only; cannot be saved).")

    _digest: str | None = PrivateAttr(None)

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @field_validator("data", mode="before")
    @classmethod
    def _to_arrow(cls, value: Any) -> Any:
        return None if value is None else to_arrow_table(value)

    @field_validator("index_range")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            start, end = value
            if start < 0 or end <= start:
                raise ValueError(f"[{start}, {end}) is empty or negative; give [start, end) with 0 <= start < end")
        return value

    @field_validator("columns")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            dupes = sorted({c for c in value if value.count(c) > 1})
            if dupes:
                raise ValueError(f"lists {', '.join(dupes)} more than once")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SeedConfig:
        if (self.path is None) == (self.data is None):
            raise ValueError("give exactly one of `path` (a file) or a DataFrame (DatasetConfig.with_seed(df))")
        return self

    # ------------------------------------------------------------ identity

    @property
    def in_memory(self) -> bool:
        """Whether the seed is a DataFrame/Arrow table held by the config."""
        return self.data is not None

    def resolved_format(self) -> SeedFormat:
        """The file format: declared, or from the extension."""
        if self.format is not None:
            return self.format
        suffix = Path(self.path or "").suffix.lower()
        found = _EXTENSIONS.get(suffix)
        if found is None:
            raise ConfigError(
                ConfigProblem(
                    "seed.format",
                    f"cannot tell the format of {self.path!r} from its extension {suffix or '(none)'}",
                    "set `format:` to parquet, csv or jsonl, or rename the file (.parquet, .csv, .jsonl)",
                )
            )
        return found

    @property
    def csv_delimiter(self) -> str:
        """The delimiter, defaulting to a tab for .tsv files."""
        if self.delimiter == "," and Path(self.path or "").suffix.lower() == ".tsv":
            return "\t"
        return self.delimiter

    def fingerprint_fields(self) -> dict[str, Any]:
        """Settings that decide which seed rows a run reads (a DataFrame by a hash of its content)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        if self.data is not None:
            if self._digest is None:
                self._digest = table_digest(self.data)
            data["data"] = f"dataframe:{self._digest}"
        return data

    # ------------------------------------------------------------ schema

    def file_schema(self) -> pa.Schema:
        """Every column of the seed with its Arrow type (file metadata or first block only)."""
        if self.data is not None:
            return self.data.schema
        fmt = self.resolved_format()
        path = Path(self.path or "").expanduser()
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is None or not path.is_file():
            raise ConfigError(
                ConfigProblem(
                    "seed.path",
                    f"seed file {self.path!r} not found",
                    "check the path; relative paths are resolved from the current directory",
                )
            )
        return _probe_schema(str(path.resolve()), fmt, self.csv_delimiter, stat.st_mtime_ns, stat.st_size)

    def schema(self) -> pa.Schema:
        """The seed columns a run uses (`columns`, or all) with their Arrow types."""
        full = self.file_schema()
        if self.columns is None:
            return full
        missing = [c for c in self.columns if c not in full.names]
        if missing:
            raise ConfigError(
                ConfigProblem(
                    "seed.columns",
                    f"{', '.join(map(repr, missing))} not in the seed",
                    f"the seed has: {', '.join(full.names)}",
                )
            )
        import pyarrow as pa

        return pa.schema([full.field(c) for c in self.columns])

    def window_problems(self) -> list[ConfigProblem]:
        """An `index_range` past the seed's rows, or an empty `partition`, found before a run reads the seed.

        Only with one of them set is the row count read (Parquet metadata; CSV/JSONL one pass over the file).
        The same words as the run's own check (`engine.seed_reader.seed_window`).
        """
        if self.index_range is None and self.partition is None:
            return []
        if self.data is not None:
            total = self.data.num_rows
        else:
            path = Path(self.path or "").expanduser().resolve()
            stat = path.stat()
            names = tuple(self.file_schema().names)
            total = _probe_rows(
                str(path), self.resolved_format(), self.csv_delimiter, names, stat.st_mtime_ns, stat.st_size
            )
        lo, hi = self.index_range or (0, total)
        if hi > total:
            return [
                ConfigProblem(
                    "seed.index_range", f"end {hi} is past the seed's {total} rows", f"give an end of at most {total}"
                )
            ]
        part = self.partition
        if part is not None and (hi - lo) * (part.index + 1) // part.count <= (hi - lo) * part.index // part.count:
            return [
                ConfigProblem(
                    "seed.partition",
                    f"part {part.index} of {part.count} of {hi - lo} seed rows is empty",
                    "use fewer parts than seed rows",
                )
            ]
        return []


def to_arrow_table(value: Any) -> pa.Table:
    """A pandas or polars DataFrame (or an Arrow table/record batch) as an Arrow table."""
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    module = type(value).__module__
    if module.startswith("pandas"):
        return pa.Table.from_pandas(value, preserve_index=False)
    if module.startswith("polars") and hasattr(value, "to_arrow"):
        return value.to_arrow()
    raise ValueError(
        f"a seed must be a file path, a pandas/polars DataFrame or an Arrow table, not {type(value).__name__}"
    )


def table_digest(table: pa.Table) -> str:
    """A content hash of an in-memory seed (its IPC stream), so resume notices a changed DataFrame."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()[:16]


def stable_schema(schema: pa.Schema) -> pa.Schema:
    """Columns that were all null in the inferred block become strings, so later values fit."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema])


@functools.lru_cache(maxsize=64)
def _probe_schema(path: str, fmt: SeedFormat, delimiter: str, mtime_ns: int, size: int) -> pa.Schema:
    del mtime_ns, size  # part of the cache key: a rewritten file is probed again
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path).remove_metadata()
        if fmt == "csv":
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(
                path,
                read_options=pcsv.ReadOptions(block_size=INFER_BYTES),
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            )
            try:
                return stable_schema(reader.schema)
            finally:
                reader.close()
        import pyarrow.json as pjson

        with open(path, "rb") as fh:
            head = fh.read(INFER_BYTES)
            if len(head) == INFER_BYTES:
                head = head[: head.rfind(b"\n") + 1] or head + fh.readline()
        if not head.strip():
            raise ValueError("the file has no records")
        return stable_schema(pjson.read_json(pa.BufferReader(head)).schema)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ConfigError(
            ConfigProblem("seed.path", f"cannot read seed file {path!r} as {fmt}: {exc}", "check the file and `format`")
        ) from None


@functools.lru_cache(maxsize=64)
def _probe_rows(path: str, fmt: SeedFormat, delimiter: str, names: tuple[str, ...], mtime_ns: int, size: int) -> int:
    """Rows of a seed file: Parquet from its footer, CSV by a streaming parse, JSONL by its non-blank lines."""
    del mtime_ns, size  # part of the cache key: a rewritten file is counted again
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "csv":
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(
                path,
                read_options=pcsv.ReadOptions(block_size=INFER_BYTES),
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),  # count only
            )
            try:
                return sum(batch.num_rows for batch in reader)
            finally:
                reader.close()
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ConfigError(
            ConfigProblem(
                "seed.path",
                f"cannot count the rows of seed file {path!r} as {fmt}: {exc}",
                "check the file and `format`",
            )
        ) from None


class SeedColumns(ColumnBase):
    """The seed as the planner sees it: one batch task per row group whose outputs are the seed's columns.

    Not a user column type (it never appears in `columns:`); the planner builds it from `seed:`.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: Literal["seed"] = "seed"
    arrow_schema: Any = Field(description="The seed columns used, with their Arrow types.")

    default_resource: ClassVar[ResourceClass] = ResourceClass.IO

    def outputs(self) -> tuple[str, ...]:
        return tuple(self.arrow_schema.names)

    @classmethod
    def of(cls, seed: SeedConfig) -> SeedColumns:
        """The seed task for a config's seed."""
        return cls(name=SEED_TASK, arrow_schema=seed.schema())
