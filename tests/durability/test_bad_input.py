"""Bad config files: each gets an error naming the field path and the fix, never a traceback — through
`DatasetConfig.from_yaml`, `rowloom validate` and `rowloom run` (in process and as a real subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rowloom.config import DatasetConfig
from rowloom.config.dataset import MAX_CONFIG_BYTES
from rowloom.errors import ConfigError

from .helpers import run_cli

HEAD = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
    "models": [{"alias": "m", "provider": "p", "model": "x"}],
}


def config(*columns: dict, **extra) -> bytes:
    return yaml.safe_dump({**HEAD, "columns": list(columns), **extra}, sort_keys=False).encode()


def laughs() -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    lines.append("columns: [{name: c, type: uuid}]")
    return "\n".join(lines).encode()


Q = {"name": "q", "type": "llm_text", "model": "m", "prompt": "Say {{ n }}"}
N = {"name": "n", "type": "uniform", "low": 1, "high": 5}
TWO_KEY_SOURCES = {**HEAD["providers"][0], "api_key_env": "K", "api_key_file": "k"}

# (case, file bytes, text the path must contain, text of the fix)
CASES = [
    ("wrong_type", config(N, run={"row_group_size": "many"}), "run.row_group_size", "expected type"),
    ("unknown_field", config({**N, "colour": "red"}), "columns[0] (n).colour", "remove `colour`"),
    ("unknown_column_type", config({"name": "n", "type": "nope"}), "columns[0] (n)", "use one of"),
    ("missing_field", config({"name": "q", "type": "llm_text", "model": "m"}), "columns[0] (q).prompt", "add the"),
    ("missing_reference", config(Q), "columns[0] (q)", "define a column named 'n'"),
    (
        "cycle",
        config({**Q, "prompt": "{{ e }}"}, {"name": "e", "type": "expression", "expr": "q"}),
        "columns",
        "break the cycle",
    ),
    ("undefined_model", config({**Q, "model": "ghost"}, N), "columns[0] (q).model", "add it under `models`"),
    ("invalid_jinja", config({**Q, "prompt": "{{ n "}, N), "columns[0] (q).prompt", "fix the template"),
    ("unsafe_jinja", config({**Q, "prompt": "{{ n.__class__ }}"}, N), "columns[0] (q).prompt", "Python internal"),
    (
        "invalid_json_schema",
        config({**Q, "type": "llm_structured", "schema": {"type": "object", "properties": {"a": {"type": 12}}}}, N),
        "columns[0] (q).schema",
        "invalid JSON Schema at properties/a/type",
    ),
    (
        "unresolvable_schema_ref",
        config({**Q, "type": "llm_structured", "schema": {"properties": {"a": {"$ref": "#/$defs/x"}}}}, N),
        "columns[0] (q).schema",
        "define it under $defs",
    ),
    ("impossible_range", config({**N, "low": 5, "high": 1}), "columns[0] (n)", "swap them"),
    ("infinite_bound", b"columns: [{name: n, type: uniform, low: 0, high: .inf}]", "columns[0] (n).high", "finite"),
    ("int64_overflow", config({**N, "high": 10**20, "integer": True}), "columns[0] (n)", "narrow the range"),
    (
        "empty_datetime_range",
        config({"name": "t", "type": "datetime", "start": "2024-02-01T00:00:00", "end": "2024-01-01T00:00:00"}),
        "columns[0] (t)",
        "must be after start",
    ),
    ("weights", config({"name": "c", "type": "category", "values": [1, 2], "weights": [1]}), "(c)", "one weight"),
    ("key_sources", config(N, providers=[TWO_KEY_SOURCES]), "providers[0]", "not both"),
    ("non_http_url", config(N, providers=[{"name": "p", "base_url": "ftp://x/v1"}]), "(p).base_url", "http://"),
    ("legacy_throttle", config(N, run={"throttle": {"max": 3}}), "run.throttle", "request_admission"),
    ("non_utf8", b"columns:\n  - {name: caf\xe9, type: uuid}\n", "bad.yaml:2", "save the file as UTF-8"),
    ("yaml_syntax", b"columns:\n  - {name: a, type: uuid\n", "bad.yaml:", "fix the YAML syntax"),
    ("empty_file", b"", "bad.yaml", "write a mapping"),
    ("top_level_list", b"- a\n- b\n", "bad.yaml", "write a mapping"),
    ("deep_nesting", b"columns: " + b"[" * 5000 + b"]" * 5000, "bad.yaml", "flatten"),
    ("alias_bomb", laughs(), "bad.yaml", "repeat aliases less"),
    ("huge_file", b"# " + b"x" * (MAX_CONFIG_BYTES + 10), "bad.yaml", "seed dataset file"),
]  # fmt: skip


def squeeze(text: str) -> str:
    """Text without whitespace: the console wraps long lines wherever it likes."""
    return "".join(text.split())


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def bad(request, tmp_path) -> tuple[Path, str, str]:
    _, content, where, fix = request.param
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    return path, where, fix


def test_loader_names_the_field_path_and_the_fix(bad):
    path, where, fix = bad
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_yaml(path)
    matching = [p for p in info.value.problems if where in p.path]
    assert matching, f"no problem at {where!r}: {info.value}"
    assert any(fix in str(p) for p in matching), f"no fix {fix!r} in: {info.value}"
    assert all(p.path and p.message for p in info.value.problems)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_reports_bad_config_without_a_traceback(bad, command, tmp_path):
    path, where, fix = bad
    args = [command, str(path)] + (["-n", "5", "-o", str(tmp_path / "out")] if command == "run" else [])
    from rowloom.interface.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert squeeze(where) in squeeze(result.output) and squeeze(fix) in squeeze(result.output)
    assert not (tmp_path / "out").exists()  # nothing was generated or created


@pytest.mark.parametrize("case", ["non_utf8", "unsafe_jinja", "alias_bomb"])
def test_real_process_prints_one_clear_message(case, tmp_path):
    _, content, where, fix = next(c for c in CASES if c[0] == case)
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = run_cli("validate", str(path), timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert squeeze(where) in squeeze(result.stderr) and squeeze(fix) in squeeze(result.stderr)


def test_missing_config_file_is_a_clear_error(tmp_path):
    from rowloom.interface.cli import app

    result = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "filenotfound" in squeeze(result.output) and "checkthepath" in squeeze(result.output)
