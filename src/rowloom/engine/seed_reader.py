"""Streaming a seed dataset by blocks: which seed row each output row reads, and reading just those rows.

Owns the output-row -> seed-row mapping (a pure function of the seed settings, the seed's row count and the run
seed, so a resumed run reads the same rows) and block-wise reads. It holds at most one decoded block at a time:

* Parquet: a block is one row group of the file (read with only the selected columns).
* CSV / JSONL: one pass at open builds an index of byte offsets (one int64 pair per block of at most
  `TEXT_BLOCK_ROWS` records or `TEXT_BLOCK_BYTES` bytes); a block is parsed from its byte range.
* A DataFrame seed is already in memory; rows are taken from it directly.

Memory bound: one decoded seed block + the rows of the output row groups in flight. Shuffled sampling reads, for
each output row group, every block holding one of its rows, so it costs more I/O (never more memory).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rowloom.config.seed import SeedConfig
from rowloom.errors import ConfigError, ConfigProblem

TEXT_BLOCK_ROWS = 65_536
TEXT_BLOCK_BYTES = 8 << 20
_SCAN_BYTES = 16 << 20
_NEWLINE, _QUOTE = 10, 34
_WHITESPACE = np.frombuffer(b" \t\r\n\f\v", dtype=np.uint8)
_U64 = np.uint64


# ------------------------------------------------------------------ mapping


def seed_window(seed: SeedConfig, total: int) -> tuple[int, int]:
    """The [start, end) seed rows a run may read: `index_range`, then the `partition` of it."""
    lo, hi = seed.index_range or (0, total)
    if hi > total:
        raise ConfigError(
            ConfigProblem(
                "seed.index_range",
                f"end {hi} is past the seed's {total} rows",
                f"give an end of at most {total}",
            )
        )
    if seed.partition is not None:
        n, part = hi - lo, seed.partition
        lo, hi = lo + part.index * n // part.count, lo + (part.index + 1) * n // part.count
        if hi <= lo:
            raise ConfigError(
                ConfigProblem(
                    "seed.partition",
                    f"part {part.index} of {part.count} of {n} seed rows is empty",
                    "use fewer parts than seed rows",
                )
            )
    return lo, hi


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic is intended)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


class SeedMapping:
    """Output row `i` -> seed row, for rows [lo, hi) of the seed (`size = hi - lo`).

    * ordered: `lo + i` (with replacement: `lo + i mod size`, cycling through the seed again);
    * shuffle: `lo + p(i)` with `p` a seeded permutation of [0, size) (a Feistel network with cycle walking: an
      exact permutation computed per row, no table of `size` entries); with replacement, `lo + h(i) mod size`
      for a seeded hash `h` (independent uniform draws).
    """

    def __init__(self, lo: int, hi: int, *, shuffle: bool, with_replacement: bool, seed: int):
        self.lo, self.hi, self.size = lo, hi, hi - lo
        self.shuffle = shuffle
        self.with_replacement = with_replacement
        key = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=_U64))
        self._keys = [_mix(key + _U64(r + 1)) for r in range(4)]
        bits = max(2, int(self.size - 1).bit_length())
        bits += bits % 2
        self._half = _U64(bits // 2)
        self._mask = _U64((1 << (bits // 2)) - 1)

    def capacity(self) -> int | None:
        """Most output rows this mapping can serve (None = unbounded, with replacement)."""
        return None if self.with_replacement else self.size

    def rows(self, start: int, count: int) -> np.ndarray:
        """Seed row indices (int64) of output rows [start, start + count)."""
        i = np.arange(start, start + count, dtype=_U64)
        size = _U64(self.size)
        if not self.shuffle:
            offsets = i % size if self.with_replacement else i
        elif self.with_replacement:
            offsets = _mix(i ^ self._keys[0]) % size
        else:
            offsets = self._permute(i)
        return offsets.astype(np.int64) + self.lo

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right ^ key) & self._mask)
        return (left << self._half) | right

    def _permute(self, i: np.ndarray) -> np.ndarray:
        y = self._feistel(i)
        size = _U64(self.size)
        outside = y >= size
        while outside.any():  # cycle walking: the cycle through i (< size) comes back below size
            y[outside] = self._feistel(y[outside])
            outside = y >= size
        return y


# ------------------------------------------------------------------ block sources


@dataclass
class SeedReadStats:
    """What the reader has materialised: for tests and the run summary."""

    blocks_read: int = 0
    rows_decoded: int = 0
    max_block_rows: int = 0


class _BlockSource:
    """Rows split into blocks; `take` decodes one block at a time (the last one is kept for the next call)."""

    def __init__(self, block_starts: np.ndarray, num_rows: int, columns: list[str]):
        self.block_starts = block_starts  # first row of each block
        self.num_rows = num_rows
        self.columns = columns
        self.stats = SeedReadStats()
        self._cached: tuple[int, pa.Table] | None = None

    def _decode(self, block: int) -> pa.Table:
        raise NotImplementedError

    def _block(self, block: int) -> pa.Table:
        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        self._cached = None  # drop the previous block before decoding the next: one block in memory
        table = self._decode(block)
        self.stats.blocks_read += 1
        self.stats.rows_decoded += table.num_rows
        self.stats.max_block_rows = max(self.stats.max_block_rows, table.num_rows)
        self._cached = (block, table)
        return table

    def take(self, indices: np.ndarray) -> pa.Table:
        """The rows at `indices` (any order, repeats allowed), in that order."""
        blocks = np.searchsorted(self.block_starts, indices, side="right") - 1
        order = np.argsort(blocks, kind="stable")
        pieces = []
        sorted_blocks = blocks[order]
        bounds = np.flatnonzero(np.diff(sorted_blocks)) + 1
        for chunk in np.split(order, bounds):
            block = int(blocks[chunk[0]])
            local = indices[chunk] - self.block_starts[block]
            pieces.append(self._block(block).take(pa.array(local, type=pa.int64())))
        combined = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return combined.take(pa.array(np.argsort(order, kind="stable"), type=pa.int64()))

    def close(self) -> None:
        self._cached = None


class _ParquetSource(_BlockSource):
    def __init__(self, path: Path, columns: list[str]):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        sizes = [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        super().__init__(starts, int(sum(sizes)), columns)

    def _decode(self, block: int) -> pa.Table:
        return self.file.read_row_group(block, columns=self.columns)

    def close(self) -> None:
        super().close()
        self.file.close()


class _TextSource(_BlockSource):
    """CSV or JSONL: a byte-offset index built in one streaming pass, blocks parsed from their byte ranges."""

    def __init__(self, path: Path, fmt: str, delimiter: str, full_schema: pa.Schema, columns: list[str]):
        self.path = path
        self.fmt = fmt
        self.delimiter = delimiter
        self.full_schema = full_schema
        first_rows, offsets, total, end = _index_text(path, csv=fmt == "csv")
        self.byte_offsets = np.append(np.asarray(offsets, dtype=np.int64), end)
        super().__init__(np.asarray(first_rows, dtype=np.int64), total, columns)

    def _decode(self, block: int) -> pa.Table:
        start, stop = int(self.byte_offsets[block]), int(self.byte_offsets[block + 1])
        with open(self.path, "rb") as fh:
            fh.seek(start)
            data = fh.read(stop - start)
        expected = int(
            (self.block_starts[block + 1] if block + 1 < len(self.block_starts) else self.num_rows)
            - self.block_starts[block]
        )
        try:
            table = self._parse(data)
        except pa.ArrowInvalid as exc:
            raise ConfigError(
                ConfigProblem(
                    "seed.path",
                    f"rows {self.block_starts[block]}.. of {self.path} do not fit the column types inferred from "
                    f"the start of the file ({exc})",
                    "convert the seed to Parquet (types are then explicit) or make the column's values consistent",
                )
            ) from None
        if table.num_rows != expected:
            raise ConfigError(
                ConfigProblem(
                    "seed.path",
                    f"block at byte {start} of {self.path} parsed to {table.num_rows} rows, expected {expected}",
                    "check the file for blank or malformed lines",
                )
            )
        return table

    def _parse(self, data: bytes) -> pa.Table:
        if self.fmt == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(
                pa.BufferReader(data),
                read_options=pcsv.ReadOptions(column_names=self.full_schema.names, block_size=max(1 << 20, len(data))),
                parse_options=pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    column_types={f.name: f.type for f in self.full_schema}, include_columns=self.columns
                ),
            )
        import pyarrow.json as pjson

        table = pjson.read_json(
            pa.BufferReader(data),
            read_options=pjson.ReadOptions(block_size=max(1 << 20, len(data))),
            parse_options=pjson.ParseOptions(explicit_schema=self.full_schema, unexpected_field_behavior="ignore"),
        )
        return table.select(self.columns)


def _index_text(path: Path, *, csv: bool) -> tuple[list[int], list[int], int, int]:
    """One pass over a CSV/JSONL file: (first record of each block, its byte offset, data records, end byte).

    Records end at newlines outside quotes (CSV: an even count of `"` before the newline, which also holds for
    escaped `""`). Lines of only whitespace are not records. For CSV the first record is the header.
    """
    firsts: list[int] = []
    offsets: list[int] = []
    records = 0  # records seen (CSV: including the header)
    quotes = 0  # quote characters before this chunk
    solid = 0  # non-whitespace bytes before this chunk
    solid_at_end = 0  # non-whitespace bytes up to the last record boundary
    prev_end = -1  # absolute position of the last record boundary (a newline)
    block_row, block_byte = 0, 0  # the current block's first data record and its byte offset
    pos = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_SCAN_BYTES):
            buf = np.frombuffer(chunk, dtype=np.uint8)
            newlines = np.flatnonzero(buf == _NEWLINE)
            if csv:
                quote_pos = np.flatnonzero(buf == _QUOTE)
                newlines = newlines[(np.searchsorted(quote_pos, newlines) + quotes) % 2 == 0]
                quotes += len(quote_pos)
            counted = solid + np.cumsum(~np.isin(buf, _WHITESPACE), dtype=np.int64)  # non-ws bytes up to i
            at_ends = counted[newlines]
            before = np.concatenate([[solid_at_end], at_ends[:-1]])
            ends = newlines.astype(np.int64) + pos
            starts = np.concatenate([[prev_end + 1], ends[:-1] + 1])[at_ends > before]  # records with content
            numbers = records + np.arange(len(starts), dtype=np.int64)
            records += len(starts)
            data = numbers - 1 if csv else numbers
            keep = data >= 0
            starts, data = starts[keep], data[keep]
            if not firsts and len(data):
                firsts.append(int(data[0]))
                offsets.append(int(starts[0]))
                block_row, block_byte = int(data[0]), int(starts[0])
            while firsts and len(data):
                j = int(
                    min(
                        np.searchsorted(data, block_row + TEXT_BLOCK_ROWS),
                        np.searchsorted(starts, block_byte + TEXT_BLOCK_BYTES),
                    )
                )
                if j >= len(data):
                    break
                block_row, block_byte = int(data[j]), int(starts[j])
                firsts.append(block_row)
                offsets.append(block_byte)
            if len(ends):
                prev_end, solid_at_end = int(ends[-1]), int(at_ends[-1])
            solid = int(counted[-1])
            pos += len(chunk)
    if solid > solid_at_end:  # a last record without a trailing newline
        number = records - 1 if csv else records
        records += 1
        if number >= 0 and not firsts:
            firsts.append(number)
            offsets.append(prev_end + 1)
    total = records - 1 if csv else records
    return firsts, offsets, max(total, 0), pos


class _TableSource:
    """An in-memory seed: rows are taken directly."""

    def __init__(self, table: pa.Table, columns: list[str]):
        self.table = table.select(columns)
        self.num_rows = table.num_rows
        self.stats = SeedReadStats()

    def take(self, indices: np.ndarray) -> pa.Table:
        self.stats.rows_decoded += len(indices)
        self.stats.max_block_rows = max(self.stats.max_block_rows, len(indices))
        return self.table.take(pa.array(indices, type=pa.int64()))

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ the reader


class SeedReader:
    """The seed rows of output row groups, read one block at a time (thread-safe: reads are serialised)."""

    def __init__(self, seed: SeedConfig, run_seed: int):
        self.seed = seed
        schema = seed.schema()
        self.schema = schema
        columns = list(schema.names)
        if seed.data is not None:
            self._source: Any = _TableSource(seed.data, columns)
        else:
            fmt = seed.resolved_format()
            path = Path(seed.path or "").expanduser()
            if fmt == "parquet":
                self._source = _ParquetSource(path, columns)
            else:
                self._source = _TextSource(path, fmt, seed.csv_delimiter, seed.file_schema(), columns)
        self.num_rows = self._source.num_rows
        if self.num_rows == 0:
            raise ConfigError(
                ConfigProblem("seed.path", f"the seed {seed.path!r} has no rows", "give a non-empty seed")
            )
        lo, hi = seed_window(seed, self.num_rows)
        self.mapping = SeedMapping(
            lo,
            hi,
            shuffle=seed.sampling == "shuffle",
            with_replacement=seed.with_replacement,
            seed=seed.seed if seed.seed is not None else run_seed,
        )
        self._lock = threading.Lock()

    @property
    def stats(self) -> SeedReadStats:
        """Blocks and rows decoded so far, and the largest block."""
        return self._source.stats

    def check_records(self, num_records: int) -> None:
        """A clear error when a run asks for more records than the seed rows it may use without replacement."""
        capacity = self.mapping.capacity()
        if capacity is not None and num_records > capacity:
            window = "" if capacity == self.num_rows else f" in its index_range/partition (of {self.num_rows})"
            raise ConfigError(
                ConfigProblem(
                    "num_records",
                    f"{num_records} records asked for, but the seed has {capacity} rows{window} and "
                    "seed.with_replacement is false",
                    f"ask for at most {capacity} records, or set seed.with_replacement: true to reuse seed rows",
                )
            )

    def read(self, start: int, count: int) -> pa.Table:
        """The seed rows of output rows [start, start + count), in output order, typed as in the seed."""
        indices = self.mapping.rows(start, count)
        with self._lock:
            return self._source.take(indices)

    def close(self) -> None:
        """Release the file and the cached block."""
        self._source.close()
