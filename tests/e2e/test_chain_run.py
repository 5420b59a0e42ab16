"""The chain example end to end over real HTTP against the provider simulator on 127.0.0.1."""

from __future__ import annotations

import json

import jsonschema
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.engine.job import run_job
from rowloom.observe.events.scheduler import TaskAdmitted, TaskReleased
from rowloom.observe.sinks import MemorySink

from .helpers import chain_config

REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}


@pytest.fixture
async def sim():
    async with SimulatorServer(SimulatorConfig(latency_s=0.01, capacity=16, models=("sim-small",))) as server:
        yield server


async def test_chain_writes_every_row_with_declared_types_and_valid_reviews(sim, tmp_path):
    config = chain_config(sim.base_url)
    result = await run_job(config, 200, output=tmp_path)

    files = sorted((tmp_path / "data").glob("*"))
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(tmp_path / "data")
    assert table.num_rows == 200
    assert table.schema.field("topic").type == pa.string()
    assert table.schema.field("difficulty").type == pa.int64()
    assert table.schema.field("question").type == pa.string()
    assert pa.types.is_struct(table.schema.field("review").type)
    frame = pd.read_parquet(tmp_path / "data")
    assert list(frame.columns) == ["topic", "difficulty", "question", "answer", "review"]
    assert frame["difficulty"].between(1, 5).all()
    assert set(frame["topic"]) <= {"astronomy", "cooking", "maritime law", "jazz"}
    assert frame["question"].str.len().gt(0).all() and frame["answer"].str.len().gt(0).all()
    for review in frame["review"]:
        jsonschema.validate(dict(review), REVIEW_SCHEMA)

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["config_fingerprint"] == config.fingerprint()
    assert [g["rows"] for g in manifest["row_groups"]] == [100, 100]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records_written"] == 200 and summary["rows_dropped"] == 0
    assert summary["requests"]["by_outcome"]["success"] == 600
    assert result.to_pandas().shape == (200, 5)


async def test_chain_columns_overlap_at_cell_level(sim, tmp_path):
    """`answer` starts on rows whose question is done, long before `question` has finished every row."""
    sink = MemorySink()
    await run_job(chain_config(sim.base_url, row_group_size=200), 200, output=tmp_path, sink=sink)
    first_answer = min(e.ts for e in sink.of(TaskAdmitted) if e.column == "answer")
    last_question = max(e.ts for e in sink.of(TaskReleased) if e.column == "question")
    assert first_answer < last_question
    # and dependency order holds per row: no answer starts before its row's question finished
    question_done = {e.task.rsplit(":", 1)[1]: e.ts for e in sink.of(TaskReleased) if e.column == "question"}
    for e in sink.of(TaskAdmitted):
        if e.column == "answer":
            assert e.ts >= question_done[e.task.rsplit(":", 1)[1]]


async def test_preview_keeps_rows_in_memory_and_writes_nothing(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = await run_job(chain_config(sim.base_url), 5, output=None)
    assert result.to_pandas().shape == (5, 5)
    assert list(tmp_path.iterdir()) == []
