"""A run keeps the heap it starts with out of the garbage collector's scans, and gives it back when it ends."""

from __future__ import annotations

import asyncio
import gc

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

CONFIG = {
    "columns": [
        {"name": "topic", "type": "category", "values": ["a", "b"]},
        {"name": "n", "type": "uniform", "low": 1, "high": 5, "integer": True},
    ],
    "run": {"row_group_size": 10},
}


def _frozen_during_run(tmp_path) -> int:
    seen: list[int] = []
    config = DatasetConfig.from_dict(CONFIG)
    result = asyncio.run(
        run_job(config, 30, output=tmp_path / "out", on_start=lambda *_: seen.append(gc.get_freeze_count()))
    )
    assert result.summary["records_written"] == 30
    return seen[0]


def test_the_heap_is_frozen_while_a_run_runs_and_thawed_after(tmp_path):
    assert gc.get_freeze_count() == 0
    assert _frozen_during_run(tmp_path) > 0
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_by_the_caller_stays_frozen_after_the_run(tmp_path):
    gc.freeze()
    try:
        assert _frozen_during_run(tmp_path) > 0
        assert gc.get_freeze_count() > 0  # the caller's to undo, not the run's
    finally:
        gc.unfreeze()
