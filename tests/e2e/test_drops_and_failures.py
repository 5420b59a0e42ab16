"""Rows that fail for good are dropped and counted by reason; bugs fail the run; error rates stop it early."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.generators.base import DropRow
from rowloom.engine.job import run_job
from rowloom.errors import RunAborted, UserCodeError

from .helpers import chain_dict


def drop_odd(row: dict) -> int:
    if row["n"] % 2:
        raise DropRow("odd")
    return row["n"] * 10


def buggy(row: dict) -> int:
    return row["missing_key"]


def sampler_config(function, **run) -> DatasetConfig:
    return DatasetConfig.from_dict(
        {
            "columns": [
                {"name": "n", "type": "uniform", "low": 0, "high": 1000, "integer": True},
                {"name": "x", "type": "custom", "function": function, "inputs": ["n"], "dtype": "int"},
            ],
            "run": {"row_group_size": 50, "seed": 1, **run},
        }
    )


async def test_user_dropped_rows_are_counted_and_left_out(tmp_path):
    result = await run_job(sampler_config(drop_odd, max_error_rate=1.0), 200, output=tmp_path)
    table = pq.read_table(tmp_path / "data").to_pandas()
    assert (table["n"] % 2 == 0).all() and (table["x"] == table["n"] * 10).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows_dropped"] == 200 - len(table)
    assert summary["rows_dropped_by_reason"] == {"x:dropped_by_user": 200 - len(table)}
    assert result.summary["records_written"] == len(table)


async def test_bug_in_custom_column_fails_the_run_with_column_name_and_is_not_a_drop(tmp_path):
    with pytest.raises(UserCodeError) as info:
        await run_job(sampler_config(buggy), 100, output=tmp_path)
    assert "'x'" in str(info.value) and "KeyError" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)  # the traceback of the user's code is kept
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["rows_dropped"] == 0


async def test_schema_invalid_replies_are_reasked_then_dropped_with_reason(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, schema_invalid_rate=1.0, models=("sim-small",))
    async with SimulatorServer(sim_config) as sim:
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, max_error_rate=1.0))
        await run_job(config, 20, output=tmp_path)
        stats = await sim.stats()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows_dropped_by_reason"] == {"review:schema_invalid": 20}
    assert summary["records_written"] == 0
    # 20 questions + 20 answers + 20 reviews x (1 ask + 2 corrections)
    assert summary["requests"]["total"] == 20 + 20 + 60
    assert stats["requests_total"] == 100


async def test_rejected_requests_stop_the_run_early_with_causes(tmp_path):
    # Every request refused on its own merits (400, as for a too-long context): rows drop, then the error window.
    sim_config = SimulatorConfig(latency_s=0.001, error_rate=1.0, error_status=400, models=("sim-small",))
    async with SimulatorServer(sim_config) as sim:
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, row_group_size=50, error_window=50))
        with pytest.raises(RunAborted) as info:
            await run_job(config, 1000, output=tmp_path)
    assert "question:client_error" in str(info.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["records_written"] == 0
