"""Skip conditions: a skipped cell is null, sends no request, is counted apart from drops, and propagates."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rowloom.engine.job import run_job
from rowloom.errors import ConfigError

from .helpers import config, docs_table, offline, write_seed


async def test_skipped_cells_are_null_unrequested_counted_and_propagated(sim, tmp_path):
    seed = write_seed(docs_table(30), tmp_path / "docs.parquet")
    columns = [
        {
            "name": "summary",
            "type": "llm_text",
            "model": "w",
            "prompt": "Summarise: {{ text }}",
            "skip_when": "text | length < 20",
        },
        {"name": "question", "type": "llm_text", "model": "w", "prompt": "Ask about: {{ summary }}"},
        {
            "name": "has_summary",
            "type": "expression",
            "expr": "summary is not none",
            "dtype": "bool",
            "propagate_skip": False,
        },
        {"name": "fallback", "type": "expression", "expr": "summary or text", "propagate_skip": False},
    ]
    result = await run_job(config(sim.base_url, columns, seed={"path": str(seed)}), 30, output=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data").to_pandas()
    short = table["text"].str.len() < 20
    assert short.sum() == 6
    assert table.loc[short, "summary"].isna().all() and table.loc[short, "question"].isna().all()
    assert table.loc[~short, "summary"].notna().all() and table.loc[~short, "question"].notna().all()
    assert (table["has_summary"] == ~short).all()
    assert (table.loc[short, "fallback"] == table.loc[short, "text"]).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cells_skipped"] == {"summary": 6, "question": 6}
    assert summary["rows_dropped"] == 0 and summary["records_written"] == 30
    stats = await sim.stats()
    assert stats["requests_total"] == 2 * 24 == summary["requests"]["total"]  # skipped cells send nothing
    assert result.summary["cells_skipped"] == summary["cells_skipped"]


async def test_batch_columns_skip_rows_and_may_read_skip_only_columns(tmp_path):
    columns = [
        {"name": "n", "type": "uniform", "low": 0, "high": 9, "integer": True},
        {"name": "flag", "type": "bernoulli", "p": 0.5},
        {"name": "double", "type": "expression", "expr": "n * 2", "dtype": "int", "skip_when": "flag"},
        {"name": "label", "type": "category", "values": ["a", "b"], "skip_when": "{{ n > 4 }}"},
        {"name": "after", "type": "expression", "expr": "double + 1", "dtype": "int"},
    ]
    result = await run_job(offline(columns), 40, output=None)
    frame = result.to_pandas()
    assert frame.loc[frame["flag"], "double"].isna().all()
    assert (frame.loc[~frame["flag"], "double"] == frame.loc[~frame["flag"], "n"] * 2).all()
    assert frame.loc[frame["n"] > 4, "label"].isna().all() and frame.loc[frame["n"] <= 4, "label"].notna().all()
    assert frame["after"].isna().equals(frame["double"].isna())  # propagated through a batch column
    flagged = int(frame["flag"].sum())
    assert result.summary["cells_skipped"] == {
        "double": flagged,
        "after": flagged,
        "label": int((frame["n"] > 4).sum()),
    }


def test_invalid_skip_when_is_a_config_error_naming_the_field():
    base = {"name": "n", "type": "uniform", "low": 0, "high": 1}
    for bad in ("n >", "", "{{ n "):
        with pytest.raises(ConfigError) as info:
            offline([base, {"name": "m", "type": "expression", "expr": "n", "skip_when": bad}])
        assert info.value.problems[0].path == "columns[1] (m).skip_when", str(info.value)
    with pytest.raises(ConfigError) as info:
        offline([base, {"name": "m", "type": "expression", "expr": "n", "skip_when": "nope > 1"}])
    assert "columns[1] (m)" in str(info.value) and "'nope'" in str(info.value)


def test_skip_settings_enter_the_fingerprint_only_when_used():
    base = {"name": "n", "type": "uniform", "low": 0, "high": 1}
    plain = offline([base, {"name": "m", "type": "expression", "expr": "n"}])
    assert all("skip_when" not in c and "propagate_skip" not in c for c in plain.fingerprint_fields()["columns"])
    skipping = offline([base, {"name": "m", "type": "expression", "expr": "n", "skip_when": "n > 0.5"}])
    not_propagating = offline([base, {"name": "m", "type": "expression", "expr": "n", "propagate_skip": False}])
    assert len({plain.fingerprint(), skipping.fingerprint(), not_propagating.fingerprint()}) == 3
