"""The CLI: validate reports problems with paths or says the config is valid; preview prints a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.engine.progress import RunProgress
from rowloom.interface.progress import render_line
from rowloom.observe.events.request import EndpointDown, EndpointUp
from rowloom.observe.stats import RequestStats

ROOT = Path(__file__).resolve().parents[2]


def rowloom(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rowloom.interface", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_validate_says_a_good_config_is_valid():
    result = rowloom("validate", str(ROOT / "examples" / "chain.yaml"))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout and "5 columns (3 LLM), 1 model, 1 provider." in result.stdout


def test_validate_reports_every_problem_with_its_path_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "columns": [
                    {"name": "a", "type": "llm_text", "model": "ghost", "prompt": "{{ nope }}"},
                    {"name": "b", "type": "uniform", "low": 3},
                ]
            }
        )
    )
    result = rowloom("validate", str(bad))
    assert result.returncode == 1
    assert "columns[1] (b).high" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_preview_prints_rows_and_writes_nothing(tmp_path):
    with SimulatorProcess(SimulatorConfig(latency_s=0.001, models=("sim-small",))) as sim:
        data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
        data["providers"][0]["base_url"] = sim.base_url
        config = tmp_path / "chain.yaml"
        config.write_text(yaml.safe_dump(data))
        result = rowloom("preview", str(config), "-n", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for column in ("topic", "difficulty", "question", "answer", "review"):
        assert column in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.yaml"]


def test_run_with_an_unreachable_endpoint_fails_cleanly(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    data["run"]["request_admission"] = {"startup_grace_s": 1.0}
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(data))
    result = rowloom("run", str(config), "-n", "20", "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach endpoint 'sim' at http://127.0.0.1:9/v1" in " ".join(result.stderr.split())
    assert (tmp_path / "out" / "summary.json").is_file()


def test_the_progress_line_says_which_endpoint_is_down_and_for_how_long():
    stats = RequestStats()
    progress = RunProgress(records_total=100)
    assert "down" not in render_line(progress, stats).plain
    stats.emit(
        EndpointDown(ts=1.0, key="sim/m", provider="sim", url="http://127.0.0.1:9/v1", last_error="x", failures=3)
    )
    stats.down["sim/m"] = ("sim", stats.down["sim/m"][1] - 12.2)  # it went down 12 s ago
    assert "endpoint sim down 12 s — probing" in render_line(progress, stats).plain
    stats.emit(EndpointUp(ts=13.2, key="sim/m", down_for_s=12.2, probes=5))
    assert "down" not in render_line(progress, stats).plain
    assert stats.endpoints()["sim/m"] == {"outages": 1, "down_s": 12.2, "stragglers": 0, "background_overloads": 0}
