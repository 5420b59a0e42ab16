"""Peak RSS of generating from a Parquet seed, to show that the seed is streamed, not loaded whole.

    python tests/features/seed_rss.py make ROWS SEED.parquet     # ~1 KiB of text per row, 10k rows per row group
    python tests/features/seed_rss.py run SEED.parquet OUT_DIR    # prints {"rows": ..., "peak_rss_mb": ...}

`run` reads every seed row (an expression over the text), drops the text before writing, and reports the
process's peak resident set size. A seed loaded whole would add its decoded size (~100 MiB per 100k rows).
"""

from __future__ import annotations

import json
import resource
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 10_000
TEXT_BYTES = 1024


def make(rows: int, path: str) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([("doc_id", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            letters = rng.integers(97, 123, size=(n, TEXT_BYTES), dtype=np.uint8)
            texts = [bytes(row).decode() for row in letters]
            writer.write_table(pa.table({"doc_id": np.arange(start, start + n), "text": texts}, schema=schema))


def run(seed: str, out: str) -> dict:
    import rowloom

    rows = pq.ParquetFile(seed).metadata.num_rows
    config = rowloom.DatasetConfig.from_dict(
        {
            "seed": {"path": seed},
            "columns": [{"name": "n", "type": "expression", "expr": "text | length", "dtype": "int"}],
            "processors": [{"type": "drop_columns", "columns": ["text"]}],
            "run": {"row_group_size": 1000, "seed": 1, "max_row_groups_in_flight": 4, "max_admitted_rows": 4000},
        }
    )
    result = rowloom.generate(config, rows, out)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "rows": rows,
        "records_written": result.summary["records_written"],
        "max_block_rows": result.summary["seed_dataset"]["max_block_rows"],
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(int(sys.argv[2]), sys.argv[3])
    else:
        print(json.dumps(run(sys.argv[2], sys.argv[3])))
