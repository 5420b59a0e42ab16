"""Every `extra_headers` value and the user:password in `base_url` are secrets: a real run with them writes
neither into anything it, its trace or its report produce, nor prints them (the API key's twin test is
`test_secrets.py`)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.interface.cli import app

from .helpers import chain_dict

GOOG = "AIzaCanary-header-5e6f7a8b9c0d"
TOKEN = "gw-canary-token-1a2b3c4d"
PASSWORD = "pw-canary-url-9z8y7x6w"


def test_header_values_and_url_credentials_never_appear_in_any_output(tmp_path: Path):
    out = tmp_path / "out"
    runner = CliRunner()
    with SimulatorProcess(SimulatorConfig(latency_s=0.01, capacity=16, models=("sim-small",))) as sim:
        data = chain_dict(sim.base_url.replace("http://", f"http://user:{PASSWORD}@"))
        data["providers"][0]["extra_headers"] = {"x-goog-api-key": GOOG, "X-Gateway-Token": TOKEN}
        config = tmp_path / "chain.yaml"
        config.write_text(yaml.safe_dump(data))
        events = tmp_path / "events.jsonl"
        ran = runner.invoke(app, ["run", str(config), "-n", "40", "-o", str(out), "--events", str(events)])
    traced = runner.invoke(app, ["trace", str(events), "-o", str(out / "trace.json")])
    reported = runner.invoke(app, ["report", str(out)])
    assert ran.exit_code == 0 and "wrote 40 records" in ran.output, ran.output
    assert traced.exit_code == 0 and reported.exit_code == 0
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    written = {p: p.read_bytes() for p in [*out.rglob("*"), events] if p.is_file()}
    assert {"manifest.json", "summary.json", "trace.json", "report.html", "events.jsonl"} <= {p.name for p in written}
    for secret in (GOOG, TOKEN, PASSWORD, basic):
        for path, content in written.items():
            assert secret.encode() not in content, f"{secret} leaked into {path.name}"
        for output in (ran.output, traced.output, reported.output):
            assert secret not in output
