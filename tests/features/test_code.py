"""Code columns: extraction from replies, Python/SQL/JSON validation outcomes, companion columns, errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rowloom.config import CodeValidation
from rowloom.engine.generators.code import extract_code, ruff_command, validate_code
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError

from .helpers import config, offline

SETTINGS = CodeValidation()


@pytest.mark.parametrize(
    ("reply", "language", "code"),
    [
        ("Sure:\n```python\nprint(1)\n```\nDone.", "python", "print(1)"),
        ("```\nSELECT 1\n```", "sql", "SELECT 1"),
        ("```js\nx()\n```\n```sql\nSELECT 2;\n```", "sql", "SELECT 2;"),
        ("```py\na = '```'\n```", "python", "a = '```'"),
        ("```python\nprint(1)\nprint(2)", "python", "print(1)\nprint(2)"),  # cut short: to the end
        ('  {"a": 1}  ', "json", '{"a": 1}'),  # no fence: the raw reply
    ],
)
def test_code_is_extracted_from_fenced_blocks_or_raw_replies(reply, language, code):
    assert extract_code(reply, language) == code


@pytest.mark.parametrize(
    ("language", "code", "problem"),
    [
        ("python", "def f(x):\n    return x * 2\n", None),
        ("python", "def f(x)\n    return x", "SyntaxError at line 1"),
        ("sql", "SELECT a, COUNT(*) FROM t WHERE b > 1 GROUP BY a", None),
        ("sql", "SELECT a FROM t WHERE", "line 1"),
        ("sql", "amber", "not a SQL statement"),
        ("sql", "amber river quiet", "Invalid expression"),
        ("json", '{"a": [1, 2]}', None),
        ("json", '{"a": [1, 2}', "invalid JSON"),
        ("json", "   ", "no code"),
    ],
)
async def test_validators_report_problems_without_raising(language, code, problem):
    errors = await validate_code(language, code, SETTINGS)
    if problem is None:
        assert errors == []
    else:
        assert errors and problem in errors[0]


@pytest.mark.skipif(ruff_command() is None, reason="ruff is not installed")
async def test_python_snippets_are_checked_by_ruff_for_broken_code_not_style():
    assert await validate_code("python", "import os\nx=1\n", SETTINGS) == []  # unused import, style: fine
    errors = await validate_code("python", "def f():\n    return undefined_name\n", SETTINGS)
    assert errors and errors[0].startswith("F821")
    assert await validate_code("python", "print(undefined)\n", CodeValidation(ruff_rules=[])) == []


async def test_llm_code_columns_write_code_valid_and_errors(sim, tmp_path):
    columns = [
        {"name": "topic", "type": "category", "values": ["sorting", "parsing"]},
        {
            "name": "snippet",
            "type": "llm_code",
            "model": "w",
            "language": "python",
            "validate": True,
            "prompt": "Write a Python function about {{ topic }}.",
        },
        {"name": "query", "type": "llm_code", "model": "w", "language": "sql", "prompt": "SQL about {{ topic }}"},
    ]
    await run_job(config(sim.base_url, columns), 12, output=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.column_names == ["topic", "snippet", "snippet__valid", "snippet__errors", "query"]
    assert table.schema.field("snippet__valid").type == pa.bool_()
    assert table.schema.field("snippet__errors").type == pa.string()
    # The simulator answers prose, which is never valid Python: every row says so, none is dropped.
    assert table.column("snippet__valid").to_pylist() == [False] * 12
    assert all("SyntaxError" in e for e in table.column("snippet__errors").to_pylist())
    assert all(table.column("snippet").to_pylist()) and all(table.column("query").to_pylist())


async def test_corrections_reask_with_the_validator_errors(sim, tmp_path):
    columns = [
        {
            "name": "snippet",
            "type": "llm_code",
            "model": "w",
            "language": "json",
            "validate": True,
            "max_correction_attempts": 2,
            "prompt": "Give JSON.",
        },
    ]
    await run_job(config(sim.base_url, columns), 5, output=tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["requests"]["total"] == 5 * 3 and summary["rows_dropped"] == 0


async def test_a_validation_column_checks_code_from_any_column(tmp_path):
    columns = [
        {"name": "n", "type": "uniform", "low": 0, "high": 3, "integer": True},
        {"name": "sql", "type": "expression", "expr": "'SELECT ' ~ n ~ ' FROM t' if n > 0 else 'SELECT FROM WHERE'"},
        {"name": "sql_check", "type": "validation", "language": "sql", "target": "sql"},
    ]
    frame = (await run_job(offline(columns), 30, output=None)).to_pandas()
    for n, check in zip(frame["n"], frame["sql_check"], strict=True):
        assert check["valid"] is (n > 0)
        assert (check["errors"] is None) is (n > 0)


def test_bad_languages_are_config_errors_naming_the_field():
    column = {"name": "c", "type": "llm_code", "prompt": "x", "model": "m"}
    models = {
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
        "models": [{"alias": "m", "provider": "p", "model": "x"}],
    }
    with pytest.raises(ConfigError) as info:
        offline([{**column, "language": "cobol"}], **models)
    assert info.value.problems[0].path == "columns[0] (c).language"
    assert "python, sql, json" in str(info.value)
    with pytest.raises(ConfigError, match=r"columns\[0\] \(c\).*no validator for 'go'"):
        offline([{**column, "language": "go", "validate": True}], **models)
    with pytest.raises(ConfigError) as info:
        offline([{"name": "v", "type": "validation", "language": "rust", "target": "x"}])
    assert info.value.problems[0].path == "columns[0] (v).language"
