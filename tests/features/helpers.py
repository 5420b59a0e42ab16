"""Shared builders for feature tests: configs pointed at a simulator on 127.0.0.1, seed files of any format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from rowloom.config import DatasetConfig

CHAT_MODEL = "sim-small"
EMBED_MODEL = "sim-embed"


def config_dict(base_url: str, columns: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A config with one simulator provider, a chat alias `w` and an embedding alias `e`."""
    run = {"row_group_size": 10, "seed": 7, **sections.pop("run", {})}
    return {
        "providers": [{"name": "sim", "base_url": base_url}],
        "models": [
            {"alias": "w", "provider": "sim", "model": CHAT_MODEL, "inference": {"max_tokens": 40}},
            {"alias": "e", "provider": "sim", "model": EMBED_MODEL},
        ],
        "columns": columns,
        "run": run,
        **sections,
    }


def config(base_url: str, columns: list[dict[str, Any]], **sections: Any) -> DatasetConfig:
    return DatasetConfig.from_dict(config_dict(base_url, columns, **sections))


def offline(columns: list[dict[str, Any]], **sections: Any) -> DatasetConfig:
    """A config without models (samplers, expressions, custom, validation, seed)."""
    run = {"row_group_size": 10, "seed": 7, **sections.pop("run", {})}
    return DatasetConfig.from_dict({"columns": columns, "run": run, **sections})


def write_seed(table: pa.Table, path: Path, *, row_group_size: int | None = None) -> Path:
    """Write `table` as Parquet, CSV or JSONL by the extension of `path`."""
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(table, path, row_group_size=row_group_size)
    elif suffix == ".csv":
        pcsv.write_csv(table, path)
    elif suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(row, default=str) + "\n")
    else:
        raise ValueError(suffix)
    return path


def docs_table(n: int, *, start: int = 0) -> pa.Table:
    """`doc_id` (int64) and `text` (string): short texts every 5th row."""
    ids = list(range(start, start + n))
    texts = ["tiny" if i % 5 == 0 else f"document number {i} with enough words to summarise" for i in ids]
    return pa.table({"doc_id": pa.array(ids, pa.int64()), "text": texts})
