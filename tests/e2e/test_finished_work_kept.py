"""A run that fails keeps what it finished: a row group complete when a bug stops the run is still written."""

from __future__ import annotations

import asyncio
import json

import pyarrow.parquet as pq
import pytest

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.errors import UserCodeError


def _racing_bug():
    """A custom column whose last call is a bug, raised just as it lets the three calls before it finish: one row
    group (the one without the failing row) becomes complete after the run's fatal error is known."""
    calls = 0
    release: asyncio.Event | None = None

    async def column(row: dict) -> int:
        nonlocal calls, release
        calls += 1
        release = release or asyncio.Event()
        if calls < 4:
            await release.wait()
            return row["n"]
        release.set()
        raise KeyError("missing_key")

    return column


async def test_a_row_group_completed_after_a_bug_is_still_written(tmp_path):
    config = DatasetConfig.from_dict(
        {
            "columns": [
                {"name": "n", "type": "uniform", "low": 0, "high": 1000, "integer": True},
                {"name": "x", "type": "custom", "function": _racing_bug(), "inputs": ["n"], "dtype": "int"},
            ],
            "run": {"row_group_size": 2, "seed": 1, "initial_row_groups_in_flight": 2, "cpu_slots": 4},
        }
    )
    with pytest.raises(UserCodeError, match="KeyError"):
        await run_job(config, 4, output=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["row_groups"]) == 1  # the finished one, not thrown away
    entry = manifest["row_groups"][0]
    assert entry["rows"] == 2 and pq.read_table(tmp_path / entry["file"]).num_rows == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [entry["file"].rpartition("/")[2]]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["records_written"] == 2
