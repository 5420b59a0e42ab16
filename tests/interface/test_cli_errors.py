"""Every mistake a new user makes gets one `error:` (or `warning:`) line saying what happened and what to do:
a refused API key, a taken port, a crashing custom column, a wrong file for `bench compare`, a typo in
`--with-sim`, an export without messages. Exact key phrases and exit codes, through the real CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.interface.cli import app

KEY = "sk-rowloom-test-key-3c1f"
KEY_ENV = "ROWLOOM_CLI_ERRORS_KEY"


def one_line(text: str) -> str:
    return " ".join(text.split())


def llm_config(path: Path, base_url: str, **provider: object) -> Path:
    """One text column against `base_url`, written to `path`."""
    data = {
        "providers": [{"name": "sim", "base_url": base_url, **provider}],
        "models": [{"alias": "writer", "provider": "sim", "model": "sim-small", "max_parallel_requests": 4}],
        "columns": [
            {"name": "topic", "type": "category", "values": ["a", "b"]},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "About {{ topic }}"},
        ],
        "run": {"row_group_size": 10},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args: str) -> tuple[int, str]:
    """Run `rowloom ARGS` in this process: (exit code, stdout and stderr as one line)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def keyed_sim() -> Iterator[SimulatorProcess]:
    """A simulator that answers only requests carrying KEY (401 for any other)."""
    with SimulatorProcess(SimulatorConfig(latency_s=0.002, models=("sim-small",), api_key=KEY)) as sim:
        yield sim


# ------------------------------------------------------------------ item 2: a refused key stops the run at once


def test_a_401_with_the_key_variable_unset_stops_the_run_naming_the_variable(keyed_sim, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = llm_config(tmp_path / "c.yaml", keyed_sim.base_url, api_key_env=KEY_ENV)
    code, output = invoke("run", str(config), "-n", "40", "-o", str(tmp_path / "out"), "-q")
    assert code == 1
    assert f"error: sim rejected the API key (401 Unauthorized): set {KEY_ENV} (it is not set" in one_line(output)
    assert "client_error" not in output and "on disk" not in output  # nothing was written: no word of the disk
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["records_written"] == 0
    # At once: the first 401 stops the endpoint; only requests already in flight got theirs.
    assert summary["requests"]["by_outcome"]["client_error"] <= 8


def test_a_401_with_the_key_variable_set_says_its_key_was_refused(keyed_sim, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-not-the-right-one")
    config = llm_config(tmp_path / "c.yaml", keyed_sim.base_url, api_key_env=KEY_ENV)
    code, output = invoke("run", str(config), "-n", "20", "-o", str(tmp_path / "out"), "-q")
    assert code == 1
    text = one_line(output)
    assert f"error: sim rejected the API key (401 Unauthorized): the key in {KEY_ENV} was refused" in text
    assert "sk-not-the-right-one" not in output


def test_a_401_with_no_key_configured_says_how_to_configure_one(keyed_sim, tmp_path):
    config = llm_config(tmp_path / "c.yaml", keyed_sim.base_url)
    code, output = invoke("run", str(config), "-n", "20", "-o", str(tmp_path / "out"), "-q")
    assert code == 1
    text = one_line(output)
    assert "sim rejected the API key (401 Unauthorized): no key is configured for provider 'sim'" in text
    assert "api_key_env" in text and "api_key_file" in text


class _Forbidden(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "this key may not use sim-small", "type": "permission_error"}}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_403_stops_the_run_with_the_providers_words(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = llm_config(tmp_path / "c.yaml", base_url, api_key_env=KEY_ENV)
        code, output = invoke("run", str(config), "-n", "20", "-o", str(tmp_path / "out"), "-q")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    text = one_line(output)
    assert f"error: sim rejected the API key (403 Forbidden): the key in {KEY_ENV} was refused" in text
    assert "this key may not use sim-small" in text and KEY not in output


def test_preview_stopped_by_a_refused_key_says_nothing_of_the_disk(keyed_sim, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = llm_config(tmp_path / "c.yaml", keyed_sim.base_url, api_key_env=KEY_ENV)
    code, output = invoke("preview", str(config), "-n", "3")
    assert code == 1
    assert "error: sim rejected the API key (401 Unauthorized)" in one_line(output)
    assert "on disk" not in output


def test_validate_warns_when_the_key_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = llm_config(tmp_path / "c.yaml", "http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    code, output = invoke("validate", str(config))
    assert code == 0
    assert f"warning: providers.sim.api_key_env: {KEY_ENV} is not set" in one_line(output)
    assert "is valid" in output
    monkeypatch.setenv(KEY_ENV, KEY)
    code, output = invoke("validate", str(config))
    assert code == 0 and "warning" not in output


# ------------------------------------------------------------------ item 6: a crashing custom column


@pytest.fixture
def crashing_column(tmp_path, monkeypatch) -> Path:
    """A seeded config of 30 rows in row groups of 10, one at a time, whose custom column raises from row 20 on
    (inside a helper of the user's module): two row groups are written before the crash."""
    (tmp_path / "rowloom_test_crash_cols.py").write_text(
        "def helper(idx):\n"
        "    if idx >= 20:\n"
        '        raise ValueError(f"no score for row {idx}")\n'
        "    return idx / 2\n"
        "\n"
        "\n"
        "def score(row):\n"
        '    return helper(row["idx"])\n'
    )
    (tmp_path / "seed.csv").write_text("idx\n" + "".join(f"{i}\n" for i in range(30)))
    data = {
        "seed": {"path": str(tmp_path / "seed.csv")},
        "columns": [
            {"name": "x", "type": "custom", "function": "rowloom_test_crash_cols:score", "inputs": ["idx"]},
        ],
        "run": {"row_group_size": 10, "initial_row_groups_in_flight": 1, "max_row_groups_in_flight": 1, "seed": 1},
    }
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "crash.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def test_a_crashing_custom_column_shows_the_users_frames_not_rowlooms(crashing_column, tmp_path):
    code, output = invoke("run", str(crashing_column), "-n", "30", "-o", str(tmp_path / "out"), "-q")
    assert code == 1
    lines = output.splitlines()
    assert lines[0] == "error: ValueError: no score for row 20"
    module = str(tmp_path / "rowloom_test_crash_cols.py")
    assert f'  File "{module}", line 8, in score' in lines
    assert f'  File "{module}", line 3, in helper' in lines
    assert lines.index(f'  File "{module}", line 8, in score') < lines.index(f'  File "{module}", line 3, in helper')
    assert "rowloom/engine" not in output and "asyncio" not in output and "concurrent" not in output
    last = one_line(output[output.index("raised by") :])
    assert last.startswith("raised by the function of custom column 'x' (rowloom_test_crash_cols:score)")
    # Two row groups were written before the crash: said, with how to go on.
    assert "every finished row group is on disk (20 records in" in last and "run the same command again" in last


def test_preview_of_a_crashing_custom_column_shows_the_frames_and_nothing_of_the_disk(crashing_column):
    code, output = invoke("preview", str(crashing_column), "-n", "30")
    assert code == 1
    assert output.startswith("error: ValueError: no score for row 20")
    assert ", in helper" in output and "raised by the function of custom column 'x'" in output
    assert "on disk" not in output


def test_preview_stopped_by_dropped_rows_says_nothing_of_the_disk(tmp_path, monkeypatch):
    (tmp_path / "rowloom_test_drop_cols.py").write_text(
        "import rowloom\n\n\ndef drop(row):\n    raise rowloom.DropRow('not this one')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "drops.yaml"
    columns = [
        {"name": "n", "type": "uniform", "low": 1, "high": 5, "integer": True},
        {"name": "x", "type": "custom", "function": "rowloom_test_drop_cols:drop", "inputs": ["n"]},
    ]
    config.write_text(yaml.safe_dump({"columns": columns}))
    code, output = invoke("preview", str(config), "-n", "5")
    assert code == 1
    assert "error: stopped early: 5 of the last 5 rows were dropped" in one_line(output)
    assert "on disk" not in output.lower()


# ------------------------------------------------------------------ item 3: a port already taken


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_with_sim_on_a_taken_port_is_one_line_naming_the_port_and_the_fix(taken_port, tmp_path):
    config = llm_config(tmp_path / "c.yaml", f"http://127.0.0.1:{taken_port}/v1")
    code, output = invoke("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "-q", "--with-sim", "seed=1")
    assert code == 1
    assert output.count("\n") == 1 and "Traceback" not in output
    assert output.startswith(f"error: port {taken_port} (base_url of provider sim) is already in use")
    assert "pick another port in base_url" in output and f"stop what listens on 127.0.0.1:{taken_port}" in output


def test_rowloom_sim_on_a_taken_port_is_one_line(taken_port):
    done = subprocess.run(
        [sys.executable, "-m", "rowloom.interface", "sim", "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3  # EXIT_PORT_IN_USE: a parent process can tell
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: port {taken_port} on 127.0.0.1 is already in use")
    assert "pick another with --port" in done.stderr and "stop what listens there" in done.stderr


# ------------------------------------------------------------------ item 8: raw errors become one line


def test_bench_compare_on_a_missing_file_or_a_non_bench_json_is_one_line(tmp_path):
    other = tmp_path / "summary.json"
    other.write_text(json.dumps({"status": "completed"}))
    code, output = invoke("bench", "compare", str(tmp_path / "missing.json"), str(other))
    assert code == 1 and "Traceback" not in output and output.count("\n") == 1
    assert output.startswith(f"error: cannot read {tmp_path / 'missing.json'}: No such file or directory;")
    assert "compare two bench.json files written by `rowloom bench`" in output
    code, output = invoke("bench", "compare", str(other), str(other))
    assert code == 1 and output.count("\n") == 1
    assert output.startswith(f"error: {other} is not a result of `rowloom bench` (it has no 'scenarios')")


def test_a_with_sim_typo_names_the_nearest_setting_and_lists_them_all(tmp_path):
    config = llm_config(tmp_path / "c.yaml", "http://127.0.0.1:9/v1")
    code, output = invoke("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "--with-sim", "latncy_s=0.2")
    assert code == 2 and output.count("\n") == 1
    assert output.startswith("error: --with-sim: unknown setting 'latncy_s' (did you mean 'latency_s'?); ")
    assert "valid settings: mode, api, latency_s, jitter" in output and "pydantic" not in output
    code, output = invoke("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "--with-sim", "capacity=lots")
    assert code == 2 and output == "error: --with-sim: capacity='lots' is not a valid integer; give e.g. capacity=64\n"
    code, output = invoke("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "--with-sim", "mode=weird")
    assert code == 2 and output == "error: --with-sim: mode='weird': input should be 'hosted' or 'vllm'\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "c.yaml", "-o", "out"], "error: missing option '--num-records' / '-n'; see rowloom run --help"),
        (
            ["run", "c.yaml", "-n", "5", "-o", "out", "--resume", "nevr"],
            "error: invalid value for '--resume': 'nevr' is not one of 'auto', 'always', 'never'; "
            "see rowloom run --help",
        ),
        (
            ["run", "c.yaml", "-n", "zz", "-o", "out"],
            "error: invalid value for '--num-records' / '-n': input should be a valid integer",
        ),
        (["run", "c.yaml", "--bogus"], "error: no such option: --bogus; see rowloom run --help"),
        (["run"], "error: missing argument 'CONFIG'; see rowloom run --help"),
        (["rnu", "c.yaml"], "error: no such command 'rnu' (did you mean 'run'?); see rowloom --help"),
        (["bench", "compare"], "error: missing argument 'BEFORE'; see rowloom bench compare --help"),
    ],
    ids=["missing-option", "bad-choice", "bad-integer", "unknown-option", "missing-argument", "typo", "subgroup"],
)
def test_a_usage_mistake_is_one_error_line_naming_the_help_to_read_and_exits_2(args, expected):
    code, output = invoke(*args)
    assert code == 2
    assert output.count("\n") == 1 and output.startswith(expected), output
    assert "Usage:" not in output and "Error:" not in output and "Value error" not in output


def test_a_bad_simulator_setting_is_one_lowercase_line():
    code, output = invoke("sim", "--capacity", "0")
    assert code == 2 and output == (
        "error: invalid simulator settings: capacity: input should be greater than or equal to 1\n"
    )


def test_rowloom_alone_shows_its_help():
    code, output = invoke()
    assert code == 2 and output.startswith("Usage: rowloom [OPTIONS] COMMAND [ARGS]...") and "run" in output


def test_export_without_messages_suggests_roles_or_plain_jsonl(tmp_path):
    config = tmp_path / "plain.yaml"
    columns = [{"name": "question", "type": "category", "values": ["q"]}, {"name": "answer", "type": "uuid"}]
    config.write_text(yaml.safe_dump({"columns": columns}))
    code, _ = invoke("run", str(config), "-n", "3", "-o", str(tmp_path / "out"), "-q")
    assert code == 0
    code, output = invoke("export", str(tmp_path / "out"), "-o", str(tmp_path / "train.jsonl"))
    assert code == 1 and output.count("\n") == 1
    text = one_line(output)
    assert text.startswith(f"error: {tmp_path / 'out'} has no column 'messages' to export as chat-jsonl")
    assert "--user COLUMN --assistant COLUMN" in text and "-f jsonl" in text and "question, answer" in text
    code, output = invoke("export", str(tmp_path / "out"), "-o", str(tmp_path / "t.jsonl"), "-f", "jsonl")
    assert code == 0 and output.startswith("wrote 3 records to")
