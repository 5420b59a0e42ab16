"""CLI output reads whole in any terminal and in any log: help shows every option name whole, flags carry no
`<bool>`, tables fit or become lists, and nothing written into a file or pipe is wrapped (it does not depend on
COLUMNS at all)."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from rowloom.interface import bench_cli
from rowloom.interface.cli import app
from rowloom.interface.output import CliConsole

ROOT = Path(__file__).resolve().parents[2]
QUICK_BENCH = ROOT / "benchmarks" / "results" / "quick" / "bench.json"
WIDTHS = (80, 200)


def commands():
    """(command words, click command) of every command and subcommand of `rowloom`."""

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "rowloom")
def test_help_shows_every_option_whole_and_no_bool_placeholder(path, width):
    command = dict((tuple(p), c) for p, c in commands())[tuple(path)]
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width)}, terminal_width=width)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for param in command.params:
        if getattr(param, "hidden", False) or param.param_type_name == "argument":
            continue
        for name in [*param.opts, *param.secondary_opts]:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} is not whole in\n{text}"
        if param.help:  # wrapped between words only: the words of every help text follow one another
            assert words(param.help) in words(text), f"{param.help!r} is broken in\n{text}"


def test_flags_read_as_flag_and_no_flag_in_help():
    text = CliRunner().invoke(app, ["sim", "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    assert "--send-retry-after / --no-retry-after" in text
    assert re.search(r"-q, --quiet +No progress display", CliRunner().invoke(app, ["run", "--help"]).output)


def rowloom(*args: str, columns: int, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess whose stdout and stderr are pipes (a log), at a given COLUMNS."""
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("FORCE_COLOR", None)
    command = [sys.executable, "-m", "rowloom.interface", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_help_into_a_pipe_names_every_option_of_sim_whole():
    result = rowloom("sim", "--help", columns=80)
    assert result.returncode == 0
    for name in ("--latency-per-token", "--capacity-schedule", "--send-retry-after", "--no-retry-after"):
        assert re.search(rf"(?<![\w-]){name}(?![\w-])", result.stdout)
    assert "<bool>" not in result.stdout and "-to…" not in result.stdout and "╭" not in result.stdout


# Every command's help as the `rowloom` script prints it (the same group, formatter and width), in one process.
ALL_HELP = """
import sys, typer.main
from rowloom.interface.cli import app

def walk(cmd, path):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from walk(sub, [*path, name])

for path in walk(typer.main.get_command(app), []):
    print("=== " + " ".join(path), flush=True)
    try:
        app([*path, "--help"], prog_name="rowloom")
    except SystemExit:
        pass
"""


def hyphenated(text: str) -> set[str]:
    return set(re.findall(r"[\w.]+(?:-[\w.]+)+", text))


def test_help_into_a_pipe_never_breaks_a_word_at_a_hyphen():
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run([sys.executable, "-c", ALL_HELP], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    helps = dict(
        (section.partition("\n")[0].strip(), section.partition("\n")[2]) for section in result.stdout.split("=== ")[1:]
    )
    assert helps.keys() == {" ".join(p) for p, _ in commands()}
    for path, command in commands():
        text = helps[" ".join(path)]
        assert all(len(line) <= 80 for line in text.splitlines()), text
        broken = [line for line in text.splitlines() if re.search(r"\w-$", line)]
        assert not broken, f"rowloom {' '.join(path)} --help breaks a word at a hyphen:\n" + "\n".join(broken)
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            default = param.default if isinstance(param.default, str) else ""
            names = set(param.opts + param.secondary_opts) if param.param_type_name == "option" else set()
            for word in hyphenated(f"{param.help or ''} {default}") | names:
                assert word in text, f"{word!r} is not whole in rowloom {' '.join(path)} --help:\n{text}"


def test_usage_lines_name_arguments_in_capitals_without_braces():
    text = CliRunner().invoke(app, ["report", "--help"]).output
    assert text.startswith("Usage: rowloom report [OPTIONS] OUT_DIR\n")
    text = CliRunner().invoke(app, ["bench", "compare", "--help"]).output
    assert text.startswith("Usage: rowloom bench compare [OPTIONS] BEFORE AFTER\n")
    assert "{" not in CliRunner().invoke(app, ["run", "--help"]).output.splitlines()[0]


def test_a_run_into_a_log_writes_whole_lines_and_ends_on_what_summary_json_says(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["run"].update(row_group_size=20, max_error_rate=1.0)
    with socket.socket() as probe:  # not chain.yaml's 18080: the README walk starts servers there
        probe.bind(("127.0.0.1", 0))
        data["providers"][0]["base_url"] = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(data))
    sim = "latency_s=0.01,capacity=32,schema_invalid_rate=0.6,seed=5"
    outputs = {}
    for width in WIDTHS:
        out = tmp_path / f"out{width}"
        args = ("run", "chain.yaml", "-n", "40", "-o", out.name, "--with-sim", sim)
        result = rowloom(*args, columns=width, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        written, dropped = summary["records_written"], summary["rows_dropped"]
        assert dropped > 0 and written + dropped == 40
        # stdout: the result, one line however long; stderr: whole lines, the last one the run's end.
        assert result.stdout.count("\n") == 1 and len(result.stdout) > 80
        assert result.stdout.lower().startswith(f"wrote {written} records to {out.name} in ")
        final = result.stderr.splitlines()[-1]
        assert f"{written}/40 records written  {dropped} rows dropped" in final
        assert "\x1b" not in result.stdout + result.stderr
        outputs[width] = [re.sub(r"[\d.]+", "N", line) for line in (result.stdout + result.stderr).splitlines()]
    assert outputs[80] == outputs[200]  # nothing wrapped: the same lines whatever COLUMNS says


def bench_console(width: int, terminal: bool) -> tuple[CliConsole, io.StringIO]:
    file = io.StringIO()
    return CliConsole(file=file, width=width, terminal=terminal, force_terminal=terminal), file


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_bench_table_fits_a_wide_terminal_and_is_one_block_per_scenario_on_a_narrow_one(monkeypatch):
    document = json.loads(QUICK_BENCH.read_text())
    scenario = next(iter(document["scenarios"]))
    value = str(document["scenarios"][scenario]["span_over_ideal"])

    console, file = bench_console(200, terminal=True)
    monkeypatch.setattr(bench_cli, "console", console)
    bench_cli._print_table(document)
    wide = ANSI.sub("", file.getvalue())
    assert "┃ scenario" in wide and "…" not in wide
    assert all(len(line) <= 200 for line in wide.splitlines())

    console, file = bench_console(80, terminal=True)
    monkeypatch.setattr(bench_cli, "console", console)
    bench_cli._print_table(document)
    narrow = ANSI.sub("", file.getvalue())
    assert "…" not in narrow and "┃" not in narrow
    assert f"\n{scenario}\n  span/ideal: {value}\n" in narrow
    assert all(len(line) <= 80 for line in narrow.splitlines())


def test_the_bench_table_into_a_file_is_markdown(monkeypatch):
    document = json.loads(QUICK_BENCH.read_text())
    console, file = bench_console(80, terminal=False)
    monkeypatch.setattr(bench_cli, "console", console)
    bench_cli._print_table(document)
    lines = file.getvalue().splitlines()
    assert lines[0] == "rowloom bench (quick)"
    assert lines[2].startswith("| scenario | span/ideal |") and lines[3].startswith("|---|")
    assert len(lines) == 4 + len(document["scenarios"]) and "…" not in file.getvalue()


def test_bench_compare_in_a_narrow_terminal_lists_metric_changes_per_scenario(monkeypatch):
    console, file = bench_console(80, terminal=True)
    monkeypatch.setattr(bench_cli, "console", console)
    result = CliRunner().invoke(app, ["bench", "compare", str(QUICK_BENCH), str(QUICK_BENCH)])
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", file.getvalue())
    assert re.search(r"\n  span_over_ideal: ([\d.]+) → \1 \(", text) and "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_preview_records_are_a_table_on_a_wide_terminal_and_blocks_elsewhere():
    from rowloom.interface.output import print_records

    columns = ["topic", "question", "answer", "review", "difficulty"]
    record = ["jazz", "Who recorded Kind of Blue in 1959?", ("Miles Davis. " * 8).strip(), '{"score": 4}', "2"]
    for width, terminal, table in ((200, True, True), (80, True, False), (80, False, False)):
        console, file = bench_console(width, terminal)
        print_records(console, columns, [record])
        text = ANSI.sub("", file.getvalue())
        assert ("┃ topic" in text) is table
        if not table:
            assert text.startswith("record 1\n  topic: jazz\n  question: Who recorded Kind of Blue in 1959?\n")
        if not terminal:  # a log: one line per value, however long
            assert "  answer: " + "Miles Davis. " * 7 + "Miles Davis.\n" in text
