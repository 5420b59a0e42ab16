"""The quick benchmark set runs end to end and produces metrics (thresholds are checked by `rowloom bench
--check`, not here: tests assert behaviour, benchmarks report figures)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rowloom.bench import suite
from rowloom.bench.runner import run_scenario
from rowloom.bench.scenarios import SCENARIOS, Scenario, _one, chain
from rowloom.config.dataset import DatasetConfig
from rowloom.observe.sinks import read_jsonl
from rowloom.observe.timeline import IDLE_CAUSES

# One scenario per path through the runner: one endpoint, two endpoints, aliases sharing one endpoint, and an
# outage measured against its baseline run. (`rowloom bench --quick --check` runs them all; that is a benchmark.)
END_TO_END = ["matched_cap", "mixed_lengths", "outage_short"]  # one alias, three aliases on one endpoint, an outage


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_scenarios_run_end_to_end_and_report_metrics(tmp_path):
    args = [arg for name in END_TO_END for arg in ("-s", name)]
    result = subprocess.run(
        # A smoke run: every path at 100 records (the scenarios' own sizes are the benchmark's business).
        [
            sys.executable,
            "-m",
            "rowloom.interface",
            "bench",
            "--quick",
            *args,
            "--records",
            "100",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "bench.json").read_text())
    assert sorted(document["scenarios"]) == sorted(END_TO_END) and document["records"] == 100
    for name, r in document["scenarios"].items():
        assert r["status"] == "completed", (name, r["status"])
        assert r["requests"] > 0 and r["rows_written"] > 0 and r["rows_short"] == 0
        assert 0 < r["utilisation"] <= 1.0
        assert r["client_cpu_ms_per_request"] > 0 and r["client_cpu_over_server"] > 0 and r["peak_rss_mb"] > 0
        assert set(r["idle_slot_s"]) <= set(IDLE_CAUSES)
    assert set(document["scenarios"]["mixed_lengths"]["endpoints"]) == {"sim"}  # three aliases, one endpoint
    outage = document["scenarios"]["outage_short"]
    assert outage["baseline_wall_s"] > 0 and outage["outage_s"] == 5.0 and outage["rows_dropped"] == 0
    assert (tmp_path / "bench.md").read_text().startswith("| scenario |")


def test_every_scenario_builds_a_valid_config():
    for scenario in SCENARIOS.values():
        urls = {ep.provider: f"http://127.0.0.1:{9000 + i}/v1" for i, ep in enumerate(scenario.endpoints)}
        config = DatasetConfig.from_dict(scenario.build(urls))
        aliases = {alias for ep in scenario.endpoints for alias in ep.aliases}
        assert aliases <= {model.alias for model in config.models}, scenario.name


def test_guardrail_check_names_each_breach():
    document = {
        "scenarios": {
            "a": {"status": "completed", "span_over_ideal": 1.2, "endpoints": {"x": {"utilisation": 0.5}}},
            "b": {"status": "failed: boom"},
        }
    }
    rails = {"a": {"span_over_ideal": {"max": 1.1}, "endpoints.x.utilisation": {"min": 0.9}}}
    breaches = [str(b) for b in suite.check(document, rails)]
    assert "a: span_over_ideal = 1.2 breaks <= 1.1" in breaches
    assert "a: endpoints.x.utilisation = 0.5 breaks >= 0.9" in breaches
    assert any(b.startswith("b: status") for b in breaches)


def test_compare_reports_relative_change():
    a = {"scenarios": {"s": {"span_over_ideal": 1.0, "utilisation": 0.8}}}
    b = {"scenarios": {"s": {"span_over_ideal": 1.1, "utilisation": 0.8}}}
    rows = suite.compare(a, b)
    assert ["s", "span_over_ideal", "1.0", "1.1", "+10.0%"] in rows


def test_every_guardrail_names_a_known_scenario():
    rails = suite.load_guardrails(suite.DEFAULT_GUARDRAILS)
    assert set(rails) - {"*"} <= set(SCENARIOS)


def test_a_smoke_run_is_never_judged_by_the_guardrails(tmp_path):
    from typer.testing import CliRunner

    from rowloom.interface.cli import app

    result = CliRunner().invoke(app, ["bench", "--check", "--records", "50", "-s", "matched_cap", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "drop --records to check guardrails" in " ".join(result.output.split())
    assert not (tmp_path / "bench.json").exists()


def test_a_seed_replaces_every_simulators_draws(tmp_path):
    """`--seed` reaches the simulator: one request at a time, the same seed draws the same failures in the same
    order, another seed others, and the result says which seed it ran."""
    scenario = Scenario(
        "seeded", "one at a time, 30% HTTP 500", _one(capacity=1, latency_s=0.005, error_rate=0.3), chain(1), 8, None
    )

    def outcomes(seed: int, run: str) -> list[str]:
        result = run_scenario(scenario, quick=False, out_dir=tmp_path / run, seed=seed)
        assert result["status"] == "completed" and result["seed"] == seed
        events = read_jsonl(tmp_path / run / "seeded.events.jsonl")
        return [e["outcome"] for e in events if e["kind"] == "request_completed"]

    first, again, other = outcomes(1, "a"), outcomes(1, "b"), outcomes(2, "c")
    assert "server_error" in first and first == again
    assert other != first
