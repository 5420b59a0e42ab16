"""The CLI: validate reports problems with paths or says the config is valid; preview prints a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig

ROOT = Path(__file__).resolve().parents[2]


def rowloom(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rowloom.interface", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_validate_says_a_good_config_is_valid():
    result = rowloom("validate", str(ROOT / "examples" / "chain.yaml"))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout and "5 columns (3 LLM)" in result.stdout


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
    data["run"]["request_admission"] = {"max_attempts": 1, "circuit_breaker_s": 1.0}
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(data))
    result = rowloom("run", str(config), "-n", "20", "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out" / "summary.json").is_file()
