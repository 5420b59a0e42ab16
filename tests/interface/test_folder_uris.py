"""Every command that takes a run's folder takes what `run -o` takes: `report` and `export` on `file://…` and
`s3://…` outputs (an S3 server on 127.0.0.1), through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rowloom.interface.cli import app

N = 20
SAMPLERS = {
    "columns": [
        {"name": "n", "type": "uniform", "low": 0, "high": 9, "integer": True},
        {"name": "word", "type": "category", "values": ["kettle", "lamp"]},
    ],
    "run": {"row_group_size": 10, "seed": 4},
}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def config(tmp_path: Path) -> Path:
    path = tmp_path / "samplers.yaml"
    path.write_text(yaml.safe_dump(SAMPLERS))
    return path


def test_report_and_export_read_a_file_uri_output(tmp_path):
    uri = f"file://{tmp_path}/out"
    events = tmp_path / "events.jsonl"
    code, text = cli("run", str(config(tmp_path)), "-n", str(N), "-o", uri, "-q", "--events", str(events))
    assert code == 0, text

    code, text = cli("export", uri, "-o", str(tmp_path / "rows.jsonl"), "-f", "jsonl")
    assert code == 0, text
    assert f"wrote {N} records to {tmp_path}/rows.jsonl" in text
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == N and set(rows[0]) == {"n", "word"}

    code, text = cli("report", uri, "--events", str(events))
    assert code == 0, text
    assert f"wrote {tmp_path}/out/report.html" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "rowloom run report — out" in html and "plot-inflight" in html


def test_a_uri_that_is_not_a_run_is_named_as_given(tmp_path):
    code, text = cli("export", f"file://{tmp_path}/none", "-o", str(tmp_path / "x.jsonl"))
    assert code == 1
    assert f"error: file://{tmp_path}/none has no manifest.json; give the --output folder of a rowloom run" in text
    code, text = cli("report", f"file://{tmp_path}/none")
    assert code == 1
    assert f"error: {tmp_path}/none/summary.json not found: is {tmp_path}/none the --output folder of a run?" in text
    for command in (["export", "nosuch://x/y", "-o", str(tmp_path / "x.jsonl")], ["report", "nosuch://x/y"]):
        code, text = cli(*command)
        assert code == 1
        assert "error: OUT_DIR nosuch://x/y is not a usable pyarrow.fs URI" in text
        assert "Traceback" not in text


def test_report_and_export_read_an_s3_output(object_store, tmp_path):
    uri = object_store.uri("runs/one")
    code, text = cli("run", str(config(tmp_path)), "-n", str(N), "-o", uri, "-q")
    assert code == 0, text

    code, text = cli("export", uri, "-o", str(tmp_path / "rows.jsonl"), "-f", "jsonl")
    assert code == 0, text
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == N
    assert "test-secret" not in text

    code, text = cli("report", uri)
    assert code == 0, text
    assert text == "wrote s3://rowloom/runs/one/report.html"
    assert "test-secret" not in text
    with object_store.filesystem().open_input_stream(f"{object_store.bucket}/runs/one/report.html") as fh:
        assert "rowloom run report — one" in fh.read().decode()

    code, text = cli("report", uri, "-o", str(tmp_path / "local.html"))
    assert code == 0 and (tmp_path / "local.html").is_file(), text

    code, text = cli("report", object_store.uri("runs/none"))
    assert code == 1
    assert (
        "error: s3://rowloom/runs/none/summary.json not found: is s3://rowloom/runs/none the --output folder of a run?"
    ) in text
