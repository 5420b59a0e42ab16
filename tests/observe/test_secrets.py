"""A canary API key used by a real run never appears in anything the run, the trace or the report writes."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.interface.cli import app

from .helpers import chain_dict

CANARY = "sk-canary-7f3a9c1e5b2d4086-do-not-leak"


def test_canary_api_key_never_appears_in_any_output_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ROWLOOM_CANARY_KEY", CANARY)
    out = tmp_path / "out"
    out.mkdir()
    log_file = logging.FileHandler(out / "run.log")
    log_file.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(log_file)
    root.setLevel(logging.DEBUG)  # every library's debug logging, aiohttp's included, goes to the run log
    runner = CliRunner()
    try:
        # The simulator rejects any request without this key, so a completed run proves the key was sent.
        sim_config = SimulatorConfig(latency_s=0.01, capacity=16, models=("sim-small",), api_key=CANARY)
        with SimulatorProcess(sim_config) as sim:
            config = tmp_path / "chain.yaml"
            config.write_text(yaml.safe_dump(chain_dict(sim.base_url, api_key_env="ROWLOOM_CANARY_KEY")))
            events = out / "events.jsonl"
            ran = runner.invoke(app, ["run", str(config), "-n", "100", "-o", str(out), "--events", str(events)])
        traced = runner.invoke(app, ["trace", str(events), "-o", str(out / "trace.json")])
        reported = runner.invoke(app, ["report", str(out)])
    finally:
        root.removeHandler(log_file)
        root.setLevel(old_level)
        log_file.close()
    assert ran.exit_code == 0, ran.output
    assert traced.exit_code == 0 and reported.exit_code == 0
    assert "wrote 100 records" in ran.output

    written = sorted(p for p in out.rglob("*") if p.is_file())
    names = {p.relative_to(out).as_posix() for p in written}
    expected = {"events.jsonl", "trace.json", "report.html", "manifest.json", "summary.json", "run.log"}
    assert expected <= names
    logged = (out / "run.log").read_text()  # the log did capture the run, from its start to its end
    assert ": 100 records; row groups: 1" in logged and "completed after" in logged
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), f"API key leaked into {path.relative_to(out)}"
    for output in (ran.output, traced.output, reported.output):
        assert CANARY not in output
