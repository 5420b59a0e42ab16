"""A model that replies with something no parser can read costs its row, never the run: an OpenAI-compatible
server on 127.0.0.1 answers some rows with a structured reply nested 1,000 deep, SQL nested 100 parentheses deep
and a number beyond every float, and the run completes with exactly those rows dropped, each with its reason."""

from __future__ import annotations

import json
import re

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

HOSTILE = {
    "structured": "[" * 1_000,
    "code": "```sql\nSELECT " + "(" * 100 + "1" + ")" * 100 + "\n```",
    "text": "1.0e999",
}
FINE = {"structured": '{"score": 3}', "code": "```sql\nSELECT 1\n```", "text": "42"}
HOSTILE_ROW = {"structured": 3, "code": 5, "text": 7}
_PROMPT = re.compile(r"^(structured|code|text) (\d+)$")


async def _chat(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    first = next(m["content"] for m in body["messages"] if m["role"] == "user")
    kind, n = _PROMPT.match(first).groups()
    content = HOSTILE[kind] if int(n) == HOSTILE_ROW[kind] else FINE[kind]
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    return web.json_response(reply)


async def test_unreadable_replies_drop_their_rows_with_reasons_and_the_run_completes(tmp_path, loopback_http):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    base_url = f"{await loopback_http(app)}/v1"
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"n": list(range(10))}), seed)
    out = tmp_path / "out"
    config = DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": base_url}],
            "models": [{"alias": "m", "provider": "p", "model": "x"}],
            "seed": {"path": str(seed)},
            "columns": [
                {
                    "name": "review",
                    "type": "llm_structured",
                    "model": "m",
                    "prompt": "structured {{ n }}",
                    "output_schema": {"type": "object", "properties": {"score": {"type": "integer"}}},
                },
                {
                    "name": "query",
                    "type": "llm_code",
                    "model": "m",
                    "prompt": "code {{ n }}",
                    "language": "sql",
                    "validate": True,
                },
                {"name": "answer", "type": "llm_text", "model": "m", "prompt": "text {{ n }}"},
                {"name": "number", "type": "expression", "expr": "{{ answer }}", "dtype": "int"},
            ],
            "run": {"row_group_size": 10, "seed": 1, "max_error_rate": 1.0},
        }
    )
    result = await run_job(config, 10, output=out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["rows_dropped_by_reason"] == {
        "review:unreadable_reply": 1,
        "query:unreadable_reply": 1,
        "number:not_int": 1,
    }
    table = pq.read_table(out / "data").to_pandas()
    assert sorted(table["n"]) == [0, 1, 2, 4, 6, 8, 9]
    assert (table["number"] == 42).all() and (table["query"] == "SELECT 1").all()
    assert result.summary["records_written"] == 7


@pytest.mark.parametrize("on_error", ["record", "drop"])
async def test_code_no_validator_can_read_is_a_validator_error_of_a_validation_column(on_error, tmp_path):
    seed = tmp_path / "seed.parquet"
    snippets = ["x = 1", "x = " + "-" * 100_000 + "1", "SELECT " + "(" * 100 + "1" + ")" * 100, "x = [1]"]
    pq.write_table(pa.table({"code": snippets, "lang": ["python", "python", "sql", "python"]}), seed)
    config = DatasetConfig.from_dict(
        {
            "seed": {"path": str(seed)},
            "columns": [
                {
                    "name": "py",
                    "type": "validation",
                    "language": "python",
                    "target": "code",
                    "on_error": on_error,
                    "validation": {"ruff_rules": []},
                },
                {"name": "sql", "type": "validation", "language": "sql", "target": "code", "on_error": on_error},
            ],
            "run": {"row_group_size": 4, "max_error_rate": 1.0},
        }
    )
    await run_job(config, 4, output=tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "completed"
    table = pq.read_table(tmp_path / "out" / "data").to_pylist()
    if on_error == "drop":  # the deep Python (MemoryError in compile) and the deep SQL (RecursionError in sqlglot)
        assert summary["rows_dropped_by_reason"] == {"py:validator_error": 1, "sql:validator_error": 1}
        assert [row["code"] for row in table] == ["x = 1", "x = [1]"]
    else:
        assert summary["rows_dropped"] == 0 and len(table) == 4
        assert table[1]["py"]["valid"] is False
        assert table[1]["py"]["errors"] == "validator could not read the code: MemoryError"
        assert table[2]["sql"]["errors"].startswith("validator could not read the code: RecursionError: maximum")
