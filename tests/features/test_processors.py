"""Processors before each write (drop, rename, schema transform) and the JSONL export in chat format."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rowloom.engine.export import ExportError, export_jsonl
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError
from rowloom.interface.export_cli import export_app

from .helpers import config, offline

QA = [
    {"name": "topic", "type": "category", "values": ["tides", "ferns"]},
    {"name": "question", "type": "llm_text", "model": "w", "prompt": "Ask about {{ topic }}"},
    {"name": "answer", "type": "llm_text", "model": "w", "prompt": "Answer: {{ question }}"},
    {"name": "n", "type": "uniform", "low": 1, "high": 5, "integer": True},
]
CHAT = {
    "type": "schema_transform",
    "keep": ["n"],
    "fields": {
        "messages": [
            {"role": "system", "content": "You know about {{ topic }}."},
            {"role": "user", "content": "{{ question }}"},
            {"role": "assistant", "content": "{{ answer }}"},
        ],
        "meta": {"topic": "{{ topic | upper }}", "source": "rowloom"},
    },
}


async def test_chat_transform_writes_messages_and_exports_jsonl_that_parses(sim, tmp_path):
    cfg = config(sim.base_url, QA, processors=[CHAT], export={"path": "train.jsonl"})
    result = await run_job(cfg, 25, output=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data")
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    assert table.schema == pa.schema(
        [
            ("n", pa.int64()),
            ("messages", pa.list_(message)),
            ("meta", pa.struct([("topic", pa.string()), ("source", pa.string())])),
        ]
    )
    assert result.summary["export"]["records"] == 25
    lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    assert len(lines) == 25
    for line in lines:
        record = json.loads(line)
        assert list(record) == ["messages"]
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in record["messages"])
    first = table.slice(0, 1).to_pylist()[0]
    assert first["meta"]["source"] == "rowloom" and first["meta"]["topic"] in {"TIDES", "FERNS"}


async def test_drop_and_rename_apply_in_order_before_each_write(tmp_path):
    columns = [
        {"name": "a", "type": "uniform", "low": 0, "high": 9, "integer": True},
        {"name": "b", "type": "expression", "expr": "a * 2", "dtype": "int"},
        {"name": "c", "type": "expression", "expr": "a + b", "dtype": "int"},
    ]
    processors = [
        {"type": "drop_columns", "columns": ["a"]},
        {"type": "rename_columns", "mapping": {"b": "double", "c": "triple"}},
    ]
    await run_job(offline(columns, processors=processors), 30, output=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.column_names == ["double", "triple"]
    assert table.schema.field("double").type == pa.int64()
    for d, t in zip(table.column("double").to_pylist(), table.column("triple").to_pylist(), strict=True):
        assert t * 2 == d * 3


async def test_export_cli_builds_chat_messages_from_columns_or_writes_every_column(sim, tmp_path):
    out = tmp_path / "out"
    await run_job(config(sim.base_url, QA), 12, output=out)
    runner = CliRunner()
    done = runner.invoke(
        export_app, [str(out), "-o", str(tmp_path / "chat.jsonl"), "--user", "question", "--assistant", "answer"]
    )
    assert done.exit_code == 0, done.output
    assert "wrote 12 records" in done.output
    for line in (tmp_path / "chat.jsonl").read_text().splitlines():
        roles = [m["role"] for m in json.loads(line)["messages"]]
        assert roles == ["user", "assistant"]
    done = runner.invoke(export_app, [str(out), "-o", str(tmp_path / "all.jsonl"), "--format", "jsonl"])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {"topic", "question", "answer", "n"}
    done = runner.invoke(export_app, [str(out), "-o", str(tmp_path / "x.jsonl")])  # no messages column
    assert done.exit_code == 1 and "'messages'" in done.output
    with pytest.raises(ExportError, match=r"no manifest\.json"):
        export_jsonl(tmp_path, tmp_path / "y.jsonl")


def test_processor_and_export_mistakes_name_their_field():
    with pytest.raises(ConfigError) as info:
        offline(QA[:1], processors=[{"type": "drop_columns", "columns": ["nope"]}])
    assert info.value.problems[0].path == "processors[0] (drop_columns)" and "'nope'" in str(info.value)
    with pytest.raises(ConfigError, match=r"processors\[1\] \(schema_transform\).*'topic'"):
        offline(
            QA[:1],
            processors=[
                {"type": "rename_columns", "mapping": {"topic": "subject"}},
                {"type": "schema_transform", "fields": {"x": "{{ topic }}"}},
            ],
        )
    with pytest.raises(ConfigError, match="renames onto existing"):
        offline([*QA[:1], QA[3]], processors=[{"type": "rename_columns", "mapping": {"topic": "n"}}])
    with pytest.raises(ConfigError) as info:
        offline(QA[:1], export={"messages_column": "messages"})
    assert info.value.problems[0].path == "export.messages_column"
    with pytest.raises(ConfigError) as info:
        offline(QA[:1], processors=[{"type": "shuffle"}])
    assert "unknown processor type 'shuffle'" in str(info.value) and "schema_transform" in str(info.value)
    with pytest.raises(ConfigError, match=r"processors\[0\].fields: .*invalid Jinja"):
        offline(QA[:1], processors=[{"type": "schema_transform", "fields": {"x": "{{ topic "}}])
