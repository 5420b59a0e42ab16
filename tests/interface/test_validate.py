"""`rowloom validate` reports every problem of a config in one pass, each on one `error:` line naming its path and
the fix (with "did you mean …?" for near misses), imports the code a config runs and lists it, checks a seed's
`index_range` against its rows, and `--allow-import` refuses modules outside a list; `run` checks the same
before it starts, and the Python API takes `allow_imports=`. Exact key phrases and exit codes, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import rowloom
from rowloom.errors import ConfigError
from rowloom.interface.cli import app

PROVIDERS = [{"name": "sim", "base_url": "http://127.0.0.1:9/v1"}]
MODELS = [{"alias": "writer", "provider": "sim", "model": "sim-small"}]


def invoke(*args: str) -> tuple[int, str]:
    """Run `rowloom ARGS` in this process: (exit code, stdout and stderr)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def write(path: Path, columns: list[dict], **sections: object) -> Path:
    path.write_text(yaml.safe_dump({"providers": PROVIDERS, "models": MODELS, "columns": columns, **sections}))
    return path


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module of user functions under a name unique to the test, importable from `tmp_path`."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str) -> str:
        module = f"rowloom_test_validate_{name}"
        (tmp_path / f"{module}.py").write_text(source)
        return module

    return make


# ------------------------------------------------------------------ one pass, did you mean


def test_a_misspelled_type_an_unknown_reference_and_an_unknown_model_are_reported_in_one_pass(tmp_path):
    config = write(
        tmp_path / "bad.yaml",
        [
            {"name": "topic", "type": "category", "values": ["a", "b"]},
            {"name": "question", "type": "llm_txt", "model": "writer", "prompt": "About {{ topic }}"},
            {"name": "answer", "type": "llm_text", "model": "writr", "prompt": "Answer {{ questoin }}"},
            {"name": "review", "type": "llm_judge", "model": "writer", "promt": "Rate {{ answer }}", "rubrics": []},
        ],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert lines[0] == (
        f"error: {config}: columns[1] (question).type: unknown column type 'llm_txt'; did you mean 'llm_text'? "
        "(or use one of: category, subcategory, uniform, gaussian, bernoulli, uuid, datetime, llm_text, "
        "llm_structured, llm_judge, expression, custom, llm_code, validation, embedding)"
    )
    assert (
        f"error: {config}: columns[2] (answer).model: model alias 'writr' is not defined; did you mean 'writer'?"
        in (lines[1])
    )
    assert lines[2].startswith(
        f"error: {config}: columns[2] (answer): refers to 'questoin', which is not a column; did you mean 'question'?"
    )
    assert f"error: {config}: columns[3] (review).promt: unknown field; did you mean `prompt`? (or remove `promt`)" in (
        lines
    )
    assert f"found {len(lines)} problems in {config}" in output
    assert "Traceback" not in output


def test_a_column_whose_type_does_not_parse_still_counts_as_a_name(tmp_path):
    config = write(
        tmp_path / "bad.yaml",
        [
            {"name": "topic", "type": "categori", "values": ["a", "b"]},
            {"name": "mood", "type": "nope"},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "{{ topic }} {{ mood }}"},
        ],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert len(lines) == 2, output
    assert "columns[0] (topic).type: unknown column type 'categori'; did you mean 'category'?" in lines[0]
    assert "columns[1] (mood).type: unknown column type 'nope'; use one of: category," in lines[1]


def test_a_column_with_a_bad_field_still_has_its_references_and_model_checked(tmp_path):
    config = write(
        tmp_path / "bad.yaml",
        [
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "hi"},
            {"name": "answer", "type": "llm_text", "model": "writr", "prompt": "{{ questoin }}", "drop": "maybe"},
            {"name": "c", "type": "custom", "function": "json:dumps", "inputs": "qz", "mode": "cel"},
        ],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert len(lines) == 5, output  # `inputs: qz` is a wrong value, not two references to 'q' and 'z'
    assert any("columns[2] (c).inputs: input should be a valid list" in line for line in lines), output
    assert any("columns[1] (answer).drop: input should be a valid boolean" in line for line in lines), output
    assert any("columns[1] (answer).model: model alias 'writr' is not defined" in line for line in lines), output
    assert any(
        "columns[1] (answer): refers to 'questoin', which is not a column; did you mean 'question'?" in line
        for line in lines
    ), output


def test_a_problem_of_the_file_itself_names_the_file_once(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns:\n  - {name: a\n")
    code, output = invoke("validate", str(broken))
    assert code == 1
    assert error_lines(output) == [
        f"error: {broken}:3:1: invalid YAML: expected ',' or '}}', but got '<stream end>'; fix the YAML syntax there"
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("columns: []\n")
    code, output = invoke("validate", str(empty))
    assert code == 1
    assert error_lines(output) == [
        f"error: {empty}: columns: list should have at least 1 item after validation, not 0; give at least one entry"
    ]


def test_a_processor_reading_a_misspelled_column_gets_did_you_mean(tmp_path):
    config = write(
        tmp_path / "bad.yaml",
        [{"name": "answer", "type": "uuid"}, {"name": "q", "type": "llm_txt"}],
        processors=[{"type": "drop_columns", "columns": ["anwser"]}, {"type": "drop_colums", "columns": ["q"]}],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert any(
        "processors[1].type: unknown processor type 'drop_colums'; did you mean 'drop_columns'?" in x for x in lines
    )
    config = write(
        tmp_path / "bad.yaml",
        [{"name": "answer", "type": "uuid"}],
        processors=[{"type": "drop_columns", "columns": ["anwser"]}],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    assert error_lines(output) == [
        f"error: {config}: processors[0] (drop_columns): reads 'anwser', not a column at this step; did you mean "
        "'answer'? columns here: answer"
    ]


def test_misspelled_sections_fields_and_providers_get_did_you_mean(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": PROVIDERS,
                "models": [
                    {
                        "alias": "writer",
                        "provider": "simm",
                        "model": "sim-small",
                        "inference": {"temprature": 0.3},
                        "temprature": 0.3,
                    }
                ],
                "columns": [{"name": "q", "type": "llm_text", "model": "writer", "prompt": "hi"}],
                "rn": {"seed": 1},
            }
        )
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert (
        f"error: {config}: models[0] (writer).inference.temprature: unknown field; did you mean `temperature`? "
        "(or remove `temprature`)"
    ) in lines
    assert any(
        "models[0] (writer).provider: provider 'simm' is not defined; did you mean 'sim'?" in line for line in lines
    )
    assert f"error: {config}: rn: unknown section; did you mean `run`? (or remove `rn`)" in lines
    assert (
        f"error: {config}: models[0] (writer).temprature: unknown field; did you mean `inference.temperature`? "
        "(or remove `temprature`)"
    ) in lines


# ------------------------------------------------------------------ user code


def test_a_function_that_cannot_be_imported_or_called_is_named(tmp_path, user_module):
    good = user_module("good", "def score(row):\n    return 1\n\ndef two(a, b):\n    return 1\n")
    broken = user_module("broken", "raise RuntimeError('no config here')\n")
    config = write(
        tmp_path / "bad.yaml",
        [
            {"name": "a", "type": "custom", "function": "rowloom_test_no_such_module:f"},
            {"name": "b", "type": "custom", "function": f"{good}:scor"},
            {"name": "c", "type": "custom", "function": f"{good}:two"},
            {"name": "d", "type": "validation", "function": f"{broken}:check"},
            {"name": "e", "type": "llm_txt", "model": "writer", "prompt": "x"},
        ],
    )
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert (
        f"error: {config}: columns[0] (a).function: cannot import 'rowloom_test_no_such_module:f': no module named "
        "'rowloom_test_no_such_module'; run rowloom in the folder that holds rowloom_test_no_such_module.py, or add "
        "that folder to PYTHONPATH"
    ) in lines
    assert (
        f"error: {config}: columns[1] (b).function: cannot import '{good}:scor': '{good}' has no attribute 'scor'; "
        "did you mean 'score'? check the name after ':'"
    ) in lines
    assert (
        f"error: {config}: columns[2] (c).function: '{good}:two' takes (a, b) but is called with one dict "
        "(the row's `inputs`); define it as `def two(row): ...`"
    ) in lines
    assert (
        f"error: {config}: columns[3] (d).function: importing '{broken}' raised RuntimeError: no config here; "
        f"fix the module {broken}"
    ) in lines
    assert any("columns[4] (e).type: unknown column type 'llm_txt'" in line for line in lines)  # same pass


def test_validate_lists_the_code_a_config_runs_with_its_source_file(tmp_path, user_module):
    module = user_module("listed", "import json\n\n\ndef score(row):\n    return len(row)\n")
    config = write(
        tmp_path / "ok.yaml",
        [
            {"name": "a", "type": "custom", "function": f"{module}:score"},
            {"name": "b", "type": "validation", "function": "json:dumps", "inputs": ["a"]},
        ],
    )
    code, output = invoke("validate", str(config))
    assert code == 0, output
    lines = output.splitlines()
    at = lines.index("code this config runs:")
    assert lines[at + 1] == f"  columns[0] (a).function: {module}:score ({tmp_path / module}.py:4)"
    assert lines[at + 2].startswith("  columns[1] (b).function: json:dumps (") and "json/__init__.py:" in lines[at + 2]


def test_the_rowloom_command_imports_functions_from_the_current_folder(tmp_path):
    (tmp_path / "mymod.py").write_text("def shout(row):\n    return str(row['word']).upper()\n")
    write(
        tmp_path / "c.yaml",
        [
            {"name": "word", "type": "category", "values": ["hi"]},
            {"name": "loud", "type": "custom", "function": "mymod:shout", "inputs": ["word"]},
        ],
    )
    script = Path(sysconfig.get_path("scripts")) / "rowloom"  # the installed command, not `python -m`
    result = subprocess.run(
        [str(script), "validate", "c.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"columns[1] (loud).function: mymod:shout ({tmp_path / 'mymod.py'}:1)" in result.stdout
    result = subprocess.run(
        [str(script), "preview", "c.yaml", "-n", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "HI" in result.stdout


# ------------------------------------------------------------------ allow-list


def test_allow_import_refuses_a_module_outside_the_list(tmp_path, user_module):
    mine = user_module("mypkg", "def ok(row):\n    return 1\n")
    config = write(
        tmp_path / "c.yaml",
        [
            {"name": "mine", "type": "custom", "function": f"{mine}:ok"},
            {"name": "danger", "type": "custom", "function": "subprocess:run"},
        ],
    )
    code, output = invoke("validate", str(config))  # no list: any module, and validate says which
    assert code == 0, output
    assert "  columns[1] (danger).function: subprocess:run (" in output
    code, output = invoke("validate", str(config), "--allow-import", mine, "--allow-import", "json")
    assert code == 1
    assert error_lines(output) == [
        f"error: {config}: columns[1] (danger).function: refused to import 'subprocess:run': module 'subprocess' "
        f"is not in --allow-import ({mine}, json); add `--allow-import subprocess` if you trust its code, "
        "or remove the column"
    ]


def test_allow_import_refuses_code_an_allowed_module_only_reexports(tmp_path, user_module):
    """`mypkg:dumps` imports only mypkg, yet runs json's code: what runs must come from the list too."""
    mine = user_module("reexports", "from json import dumps\n\n\ndef ok(row):\n    return 1\n")
    config = write(
        tmp_path / "c.yaml",
        [
            {"name": "ok", "type": "custom", "function": f"{mine}:ok"},
            {"name": "dump", "type": "custom", "function": f"{mine}:dumps"},
        ],
    )
    code, output = invoke("validate", str(config), "--allow-import", mine)
    assert code == 1
    assert error_lines(output) == [
        f"error: {config}: columns[1] (dump).function: refused to run '{mine}:dumps': it is dumps from module "
        f"'json', which is not in --allow-import ({mine}); add `--allow-import json` if you trust its code, or name "
        "a function defined in an allowed module"
    ]
    code, output = invoke("validate", str(config), "--allow-import", mine, "--allow-import", "json")
    assert code == 0, output


def test_run_checks_the_same_before_it_starts(tmp_path, user_module):
    config = write(
        tmp_path / "c.yaml",
        [
            {"name": "word", "type": "category", "values": ["hi"]},
            {"name": "danger", "type": "custom", "function": "subprocess:run", "inputs": ["word"]},
        ],
    )
    out = tmp_path / "out"
    code, output = invoke("run", str(config), "-n", "2", "-o", str(out), "-q", "--allow-import", "json")
    assert code == 1
    assert "columns[1] (danger).function: refused to import 'subprocess:run'" in error_lines(output)[0]
    assert not out.exists()
    code, output = invoke("preview", str(config), "-n", "2", "--allow-import", "json")
    assert code == 1 and "refused to import 'subprocess:run'" in output
    config = write(tmp_path / "d.yaml", [{"name": "a", "type": "custom", "function": "rowloom_test_gone:f"}])
    code, output = invoke("run", str(config), "-n", "2", "-o", str(out), "-q")
    assert code == 1
    assert "columns[0] (a).function: cannot import 'rowloom_test_gone:f': no module named" in output
    assert not out.exists()


def test_the_python_api_takes_allow_imports(tmp_path):
    config = write(tmp_path / "c.yaml", [{"name": "danger", "type": "custom", "function": "subprocess:run"}])
    with pytest.raises(ConfigError) as info:
        rowloom.preview(config, 2, allow_imports=["mypkg"])
    assert str(info.value) == (
        "columns[0] (danger).function: refused to import 'subprocess:run': module 'subprocess' is not in "
        "allow_imports (mypkg). Fix: add 'subprocess' to allow_imports if you trust its code, or remove the column"
    )
    with pytest.raises(ConfigError, match="module 'subprocess' is not in allow_imports"):
        rowloom.generate(config, 2, tmp_path / "out", allow_imports=["mypkg"])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ seeds


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_an_index_range_past_the_seeds_rows_is_named(tmp_path, fmt):
    table = pa.table({"city": [f"c{i}" for i in range(60)]})
    seed = tmp_path / f"seed.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, seed)
    elif fmt == "csv":
        seed.write_text("city\n" + "".join(f'"c\n{i}"\n' for i in range(60)))  # newlines inside values
    else:
        seed.write_text("".join(f'{{"city": "c{i}"}}\n\n' for i in range(60)))  # blank lines are not rows
    columns = [{"name": "q", "type": "expression", "expr": "{{ city }}!"}]
    config = write(tmp_path / "c.yaml", columns, seed={"path": str(seed), "index_range": [10, 100]})
    code, output = invoke("validate", str(config))
    assert code == 1
    assert error_lines(output) == [
        f"error: {config}: seed.index_range: end 100 is past the seed's 60 rows; give an end of at most 60"
    ]
    config = write(tmp_path / "c.yaml", columns, seed={"path": str(seed), "index_range": [10, 60]})
    code, output = invoke("validate", str(config))
    assert code == 0, output


def test_an_index_range_past_the_rows_is_reported_with_the_other_problems(tmp_path):
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"city": ["a", "b"]}), seed)
    columns = [
        {"name": "q", "type": "expresion", "expr": "{{ cty }}"},
        {"name": "r", "type": "expression", "expr": "{{ cty }}"},
    ]
    config = write(tmp_path / "c.yaml", columns, seed={"path": str(seed), "index_range": [0, 5]})
    code, output = invoke("validate", str(config))
    assert code == 1
    lines = error_lines(output)
    assert any("seed.index_range: end 5 is past the seed's 2 rows" in line for line in lines)
    assert any("columns[0] (q).type: unknown column type 'expresion'; did you mean 'expression'?" in x for x in lines)
    assert any("columns[1] (r): refers to 'cty'" in line and "did you mean 'city'?" in line for line in lines)


def test_a_python_module_run_of_the_cli_sees_the_same_one_line_per_problem_at_any_width(tmp_path):
    """`python -m rowloom.interface` (how the other CLI tests run it), output into a pipe: each problem stays one
    whole line at 80 columns as at 200."""
    config = write(tmp_path / "c.yaml", [{"name": "q", "type": "llm_txt", "model": "writer", "prompt": "{{ qq }}"}])
    for width in ("80", "200"):
        result = subprocess.run(
            [sys.executable, "-m", "rowloom.interface", "validate", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": width},
        )
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: {config}: columns[0] (q).type: unknown column type 'llm_txt'; did you mean 'llm_text'? (or use "
            "one of: category, subcategory, uniform, gaussian, bernoulli, uuid, datetime, llm_text, llm_structured, "
            "llm_judge, expression, custom, llm_code, validation, embedding)",
            f"error: {config}: columns[0] (q): refers to 'qq', which is not a column; define a column named 'qq' "
            "or correct the name (known: q)",  # no 'did you mean' a column's own name: it cannot read itself
            f"found 2 problems in {config}",
        ]


def test_validate_warns_that_a_budget_is_no_hard_limit_for_a_model_without_max_tokens(tmp_path):
    columns = [{"name": "a", "type": "llm_text", "model": "writer", "prompt": "hi"}]
    path = write(tmp_path / "c.yaml", columns, run={"budget": {"max_tokens": 1000}})
    code, output = invoke("validate", str(path))
    assert code == 0
    assert (
        "warning: models[0] (writer).inference.max_tokens is not set, so run.budget is not a hard limit: when it "
        "stops the run, up to 64 replies of writer still in flight can pass it by their length; set max_tokens to "
        "bound them"
    ) in " ".join(output.split())
    models = [{**MODELS[0], "inference": {"max_tokens": 50}}]
    path.write_text(
        yaml.safe_dump(
            {"providers": PROVIDERS, "models": models, "columns": columns, **{"run": {"budget": {"max_requests": 9}}}}
        )
    )
    code, output = invoke("validate", str(path))
    assert code == 0 and "warning" not in output
