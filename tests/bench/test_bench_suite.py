"""The quick benchmark set runs end to end and produces metrics (thresholds are checked by `rowloom bench
--check`, not here: tests assert behaviour, benchmarks report figures)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rowloom.bench import suite
from rowloom.bench.scenarios import SCENARIOS


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_set_completes_and_reports_metrics_for_every_scenario(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rowloom.interface", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "bench.json").read_text())
    quick = [name for name, s in SCENARIOS.items() if s.in_quick]
    assert sorted(document["scenarios"]) == sorted(quick)
    for name, r in document["scenarios"].items():
        assert r["status"] == "completed", (name, r["status"])
        assert r["requests"] > 0 and r["rows_written"] > 0
        assert 0 < r["utilisation"] <= 1.0
        assert r["client_cpu_ms_per_request"] > 0 and r["peak_rss_mb"] > 0
        assert set(r["idle_slot_s"]) <= {"starved", "frontier_limited", "admission_blocked", "rate_limited"}
    assert (tmp_path / "bench.md").read_text().startswith("| scenario |")


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
