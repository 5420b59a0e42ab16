"""A large Parquet seed is streamed: peak RSS of a subprocess run barely depends on the seed's size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

SCRIPT = Path(__file__).with_name("seed_rss.py")


def _rss(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}


def test_peak_rss_grows_far_less_than_the_seed(tmp_path):
    small, large = tmp_path / "s.parquet", tmp_path / "l.parquet"
    _rss("make", "10000", str(small))
    _rss("make", "100000", str(large))
    metadata = pq.ParquetFile(large).metadata
    decoded_mb = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)) / 2**20
    a = _rss("run", str(small), str(tmp_path / "out-s"))
    b = _rss("run", str(large), str(tmp_path / "out-l"))
    print(f"peak RSS: 10k-row seed {a['peak_rss_mb']} MB, 100k-row seed {b['peak_rss_mb']} MB ({decoded_mb:.0f} MB)")
    assert a["records_written"] == 10_000 and b["records_written"] == 100_000
    assert a["max_block_rows"] == b["max_block_rows"] == 10_000  # one seed row group at a time
    # Loading the seed whole would add at least its decoded size; streaming adds allocator slack only.
    assert b["peak_rss_mb"] - a["peak_rss_mb"] < 0.75 * decoded_mb
