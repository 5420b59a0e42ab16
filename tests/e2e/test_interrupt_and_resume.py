"""Ctrl-C on a real `rowloom run` subprocess: clean exit, readable files, and a resume with no gaps or duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig

from .helpers import chain_dict


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.02, capacity=32, models=("sim-small",))) as server:
        yield server


def write_config(tmp_path, base_url):
    data = chain_dict(base_url, row_group_size=25, seed=11)
    data["columns"].insert(0, {"name": "row_id", "type": "uuid"})
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rowloom(*args: str) -> list[str]:
    return [sys.executable, "-m", "rowloom.interface", *args]


def wait_for_row_groups(out, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        manifest = out / "manifest.json"
        if manifest.is_file():
            try:
                if len(json.loads(manifest.read_text())["row_groups"]) >= count:
                    return
            except ValueError:
                pass  # mid-rename on some filesystems; try again
        time.sleep(0.05)
    raise AssertionError(f"no {count} row groups within {timeout_s}s")


def test_sigint_stops_cleanly_and_a_rerun_resumes_without_gaps_or_duplicates(sim, tmp_path):
    config = write_config(tmp_path, sim.base_url)
    out = tmp_path / "out"
    n = 600
    proc = subprocess.Popen(
        rowloom("run", str(config), "-n", str(n), "-o", str(out), "--quiet"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for_row_groups(out, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False
    listed = [g["file"] for g in manifest["row_groups"]]
    assert listed and len(listed) < n // 25
    for file in listed:  # every listed file is complete and readable
        assert pq.read_table(out / file).num_rows == 25
    assert not list((out / "data").glob(".tmp-*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"

    rerun = subprocess.run(
        rowloom("run", str(config), "-n", str(n), "-o", str(out), "--quiet"), capture_output=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    table = pq.read_table(out / "data").to_pandas()
    assert len(table) == n
    assert table["row_id"].is_unique
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records_resumed"] == len(listed) * 25


def test_resume_refuses_a_different_config_and_names_the_field(sim, tmp_path):
    config = write_config(tmp_path, sim.base_url)
    out = tmp_path / "out"
    first = subprocess.run(rowloom("run", str(config), "-n", "50", "-o", str(out), "-q"), capture_output=True)
    assert first.returncode == 0, first.stderr.decode()
    data = yaml.safe_load(config.read_text())
    data["columns"][3]["prompt"] = "Something else about {{ topic }}"
    config.write_text(yaml.safe_dump(data))
    second = subprocess.run(rowloom("run", str(config), "-n", "50", "-o", str(out), "-q"), capture_output=True)
    assert second.returncode == 1
    message = second.stderr.decode()
    assert "different config" in message and "question" in message and "prompt" in message
    assert "Traceback" not in message
