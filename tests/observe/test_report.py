"""The HTML run report renders from a real run: one self-contained file with the summary and the plots."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.interface.cli import app
from rowloom.observe.report import PLOT_IDS, render_report
from rowloom.observe.report_ledger import LEDGER_PLOT_ID, spend_series
from rowloom.observe.sinks import JsonlSink, read_jsonl

from .helpers import chain_dict, run_with_events


async def test_report_renders_from_a_real_run_with_summary_and_every_plot(sim, tmp_path):
    await run_with_events(sim.base_url, tmp_path, 200)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])  # events default to OUT_DIR/events.jsonl
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    for div_id in (*PLOT_IDS, LEDGER_PLOT_ID):
        assert f'id="{div_id}"' in page
    assert page.count("Plotly.newPlot") == len(PLOT_IDS) + 1
    assert "plotly.js" in page.lower()  # the library itself is inlined ...
    assert not re.search(r"<script[^>]+src=", page)  # ... and nothing is loaded from elsewhere
    assert "<table id='summary'" in page and "<table id='endpoints'" in page
    assert "200 of 200" in page and "success: 600" in page
    assert "ideal bound" in page and "rate-limited" in page and "frontier-limited" in page
    assert "sim/sim-small" in page and "no-events" not in page
    summary = json.loads((tmp_path / "summary.json").read_text())
    ledger = re.search(r"<table id='ledger'.*?</table>", page).group(0)
    prompt = summary["ledger"]["totals"]["prompt_tokens"]
    assert prompt > 0 and f"<tr><th>this run</th><td>600</td><td>{prompt:,}</td>" in ledger
    for column in ("question", "answer", "review"):
        assert f"<th>column {column}</th><td>200</td>" in ledger
    assert "<th>spent on dropped rows</th><td>0</td>" in ledger
    assert "no prices" in page and "cost (" not in ledger


async def test_with_prices_the_report_shows_cost_per_column_the_spend_and_its_course_over_time(sim, tmp_path):
    data = chain_dict(sim.base_url)
    data["models"][0]["pricing"] = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "currency": "EUR"}
    data["run"]["budget"] = {"max_cost": 5.0}
    result = await run_job(DatasetConfig.from_dict(data), 60, output=tmp_path, sink=JsonlSink(tmp_path / "e.jsonl"))
    ledger = result.summary["ledger"]
    assert ledger["currency"] == "EUR" and ledger["totals"]["cost"] > 0
    page = render_report(tmp_path, events=tmp_path / "e.jsonl").read_text()
    table = re.search(r"<table id='ledger'.*?</table>", page).group(0)
    assert "<th>cost (EUR)</th>" in table
    assert f"<td>{ledger['by_column']['answer']['cost']:,.4f}</td></tr>" in table
    spend = re.search(r"<table id='spend'.*?</table>", page).group(0)
    assert f"{result.summary['spend']['all_runs']['cost']:,.4f} of 5.00 (run.budget.max_cost)" in spend
    assert f'id="{LEDGER_PLOT_ID}"' in page
    # The course over time ends on the ledger's totals, column by column.
    series = spend_series(read_jsonl(tmp_path / "e.jsonl"), 0.0, ledger["prices"])
    for column in ("question", "answer", "review"):
        _, tokens, costs = series[column]
        assert tokens[-1] == ledger["by_column"][column]["total_tokens"]
        assert costs[-1] == pytest.approx(ledger["by_column"][column]["cost"])


async def test_report_without_events_shows_the_summary_and_says_events_were_not_recorded(sim, tmp_path):
    from rowloom.engine.job import run_job

    from .helpers import chain_config

    await run_job(chain_config(sim.base_url), 100, output=tmp_path)
    path = render_report(tmp_path, output=tmp_path / "r.html")
    page = path.read_text()
    assert "Events were not recorded" in page and 'id="no-events"' in page
    assert "100 of 100" in page
    assert not any(f'id="{div_id}"' in page for div_id in PLOT_IDS)
    assert "Plotly" not in page  # nothing to plot, no 4 MB of JavaScript


def test_report_of_a_folder_without_a_run_fails_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "summary.json not found" in " ".join(result.output.split())  # rich wraps long lines


def test_report_with_an_explicit_events_file_that_is_missing_fails_clearly(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--events", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1
    assert "nope.jsonl not found" in " ".join(result.output.split())
