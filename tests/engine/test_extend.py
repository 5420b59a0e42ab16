"""Extending a run to more records: the rows it already has are the rows a fresh run of the larger count gives.

Draws depend on (seed, column, row), not on how rows are cut into row groups, and seed rows on the output row
alone, so a run extended (even twice, from counts that end inside a row group) equals a fresh run row for row.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.plan import row_groups
from rowloom.errors import ConfigError

SAMPLERS = [
    {"name": "c", "type": "category", "values": ["a", "b", "c"], "weights": [1, 2, 3]},
    {
        "name": "s",
        "type": "subcategory",
        "category": "c",
        "values": {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1", "c2"]},
    },
    {"name": "u", "type": "uniform", "low": 0, "high": 1},
    {"name": "i", "type": "uniform", "low": 1, "high": 9, "integer": True},
    {"name": "g", "type": "gaussian", "mean": 0, "stddev": 1, "low": -1, "high": 1},
    {"name": "b", "type": "bernoulli", "p": 0.4},
    {"name": "id", "type": "uuid"},
    {"name": "t", "type": "datetime", "start": "2024-01-01T00:00:00", "end": "2024-12-31T00:00:00", "unit": "h"},
    {"name": "e", "type": "expression", "expr": "c ~ '-' ~ i", "dtype": "string"},
]


def test_an_extended_run_is_cut_at_its_earlier_counts_and_draws_from_the_same_streams():
    assert [(g.start, g.count, g.stream, g.offset) for g in row_groups(25, 10)] == [
        (0, 10, 0, 0),
        (10, 10, 1, 0),
        (20, 5, 2, 0),
    ]
    assert [(g.index, g.start, g.count, g.stream, g.offset) for g in row_groups(40, 10, (25,))] == [
        (0, 0, 10, 0, 0),
        (1, 10, 10, 1, 0),
        (2, 20, 5, 2, 0),
        (3, 25, 5, 2, 5),  # completes stream 2 from its sixth row
        (4, 30, 10, 3, 0),
    ]
    assert row_groups(40, 10, (20,)) == row_groups(40, 10)  # an aligned earlier count cuts nothing new


@pytest.mark.parametrize(
    "seed",
    [
        None,
        {"sampling": "ordered"},
        {"sampling": "shuffle"},
        {"sampling": "ordered", "with_replacement": True},
        {"sampling": "shuffle", "with_replacement": True},
    ],
    ids=["no-seed", "ordered", "shuffle", "ordered-replacement", "shuffle-replacement"],
)
async def test_extending_twice_gives_the_rows_of_a_fresh_run(tmp_path, seed):
    pq.write_table(pa.table({"doc": [f"d{k}" for k in range(60)]}), tmp_path / "seed.parquet")
    data: dict = {"columns": SAMPLERS, "run": {"row_group_size": 10}}  # no run.seed: the manifest keeps it
    if seed is not None:
        data["seed"] = {"path": str(tmp_path / "seed.parquet"), **seed}
    config = DatasetConfig.from_dict(data)
    out = tmp_path / "out"
    first = await run_job(config, 23, output=out)
    await run_job(config, 37, output=out)
    extended = await run_job(config, 50, output=out)
    assert extended.summary["extended_from"] == [23, 37]
    assert extended.summary["records_resumed"] == 37 and extended.summary["records_written_this_run"] == 13
    rows = extended.to_pandas()
    assert rows.iloc[:23].equals(first.to_pandas())
    data["run"]["seed"] = first.summary["seed"]
    fresh = await run_job(DatasetConfig.from_dict(data), 50, output=tmp_path / "fresh")
    assert rows.equals(fresh.to_pandas())


async def test_extending_past_the_seed_rows_is_refused_before_anything_changes(tmp_path):
    pq.write_table(pa.table({"doc": [f"d{k}" for k in range(30)]}), tmp_path / "seed.parquet")
    config = DatasetConfig.from_dict(
        {"columns": SAMPLERS[:1], "seed": {"path": str(tmp_path / "seed.parquet"), "sampling": "shuffle"}}
    )
    out = tmp_path / "out"
    await run_job(config, 25, output=out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="40 records asked for, but the seed has 30 rows"):
        await run_job(config, 40, output=out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
