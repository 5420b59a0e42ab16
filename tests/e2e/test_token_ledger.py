"""The token ledger against the simulator's own counts: per endpoint, with retries, re-asks, replies without usage,
rows that were dropped, and runs that continue an earlier one (the manifest adds them up)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.generators.base import DropRow
from rowloom.engine.job import run_job
from rowloom.models.ledger import TokenLedger
from rowloom.observe.events.base import event_from_dict
from rowloom.observe.sinks import MemorySink

from .helpers import chain_dict
from .test_interrupt_and_resume import rowloom, wait_for_row_groups

TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def sim_tokens(stats: dict) -> dict[str, int]:
    return {name: stats[name] for name in TOKENS}


def ledger_tokens(counts: dict) -> dict[str, int]:
    return {name: counts[name] for name in TOKENS}


def two_endpoint_chain(url_a: str, url_b: str, **run) -> DatasetConfig:
    """The chain example, its review column graded by a second provider."""
    data = chain_dict(url_a, **run)
    data["providers"].append({"name": "b", "base_url": url_b})
    data["models"].append({**data["models"][0], "alias": "grader", "provider": "b"})
    data["columns"][-1]["model"] = "grader"
    return DatasetConfig.from_dict(data)


async def test_ledger_equals_each_simulators_counts_with_retries_reasks_and_token_details(tmp_path):
    faults = {"error_rate": 0.2, "schema_invalid_rate": 0.3, "usage_details": True}
    config_a = SimulatorConfig(latency_s=0.002, capacity=32, models=("sim-small",), seed=1, **faults)
    config_b = SimulatorConfig(latency_s=0.002, capacity=32, models=("sim-small",), seed=2, **faults)
    events = MemorySink()
    async with SimulatorServer(config_a) as a, SimulatorServer(config_b) as b:
        config = two_endpoint_chain(a.base_url, b.base_url, max_error_rate=1.0, row_group_size=20, seed=5)
        result = await run_job(config, 60, output=tmp_path, sink=events)
        stats_a, stats_b = await a.stats(), await b.stats()
    ledger = result.summary["ledger"]
    by_endpoint = ledger["by_endpoint"]
    assert set(by_endpoint) == {"sim/sim-small", "b/sim-small"}
    assert ledger_tokens(by_endpoint["sim/sim-small"]) == sim_tokens(stats_a)
    assert ledger_tokens(by_endpoint["b/sim-small"]) == sim_tokens(stats_b)
    assert stats_a["cached_tokens"] > 0 and stats_b["reasoning_tokens"] > 0
    # Retries (500s) and re-asks (schema failures) were paid for and are in the counts.
    assert stats_a["by_status"].get("500", 0) > 0 and result.summary["rows_dropped"] > 0
    assert ledger["totals"]["requests"] == result.summary["requests"]["total"]
    assert ledger["totals"]["requests"] == stats_a["requests_total"] + stats_b["requests_total"]
    assert ledger["totals"]["unknown_usage"] == 0
    assert ledger_tokens(ledger["by_model"]["grader"]) == sim_tokens(stats_b)
    assert ledger_tokens(ledger["by_column"]["review"]) == sim_tokens(stats_b)
    assert sum(c["total_tokens"] for c in ledger["by_column"].values()) == ledger["totals"]["total_tokens"]
    # The same ledger again from the run's event log, read back from JSON.
    replayed = TokenLedger()
    for event in events.events:
        replayed.emit(event_from_dict(json.loads(event.to_json())))
    assert replayed.to_dict() == ledger
    # A fresh folder: the manifest holds what summary.json says.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["ledger"] == ledger == result.summary["ledger_all_runs"]


async def test_replies_without_usage_are_counted_as_unknown_never_as_zero(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, omit_usage_rate=0.4, models=("sim-small",))
    async with SimulatorServer(sim_config) as sim:
        result = await run_job(DatasetConfig.from_dict(chain_dict(sim.base_url)), 30, output=tmp_path)
        stats = await sim.stats()
    totals = result.summary["ledger"]["totals"]
    assert stats["usage_omitted"] > 0
    assert totals["unknown_usage"] == stats["usage_omitted"]
    assert ledger_tokens(totals) == sim_tokens(stats)  # only what was reported, nothing guessed for the rest
    assert totals["requests"] == stats["requests_total"] == 90


async def test_spend_on_rows_dropped_after_a_paid_column_is_counted_apart(tmp_path):
    # Every review breaks its schema: each row is dropped after its question and answer were paid for.
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, schema_invalid_rate=1.0, models=("sim-small",))
    async with SimulatorServer(sim_config) as sim:
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, max_error_rate=1.0, row_group_size=10))
        result = await run_job(config, 20, output=tmp_path)
        stats = await sim.stats()
    ledger = result.summary["ledger"]
    assert result.summary["rows_dropped"] == 20
    assert ledger["dropped_rows"] == ledger["totals"]
    assert ledger_tokens(ledger["dropped_rows"]) == sim_tokens(stats)


def drop_odd(row: dict) -> str:
    if row["n"] % 2:
        raise DropRow("odd")
    return row["text"]


async def test_dropped_rows_spend_is_their_requests_and_the_rest_is_the_written_rows(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, models=("sim-small",))
    data = chain_dict("http://127.0.0.1:1/v1", max_error_rate=1.0, row_group_size=25, seed=3)
    data["columns"] = [
        {"name": "n", "type": "uniform", "low": 0, "high": 1000, "integer": True},
        {"name": "text", "type": "llm_text", "model": "writer", "prompt": "Write about the number {{ n }}."},
        {"name": "kept", "type": "custom", "function": drop_odd, "inputs": ["n", "text"], "dtype": "string"},
    ]
    async with SimulatorServer(sim_config) as sim:
        data["providers"][0]["base_url"] = sim.base_url
        result = await run_job(DatasetConfig.from_dict(data), 100, output=tmp_path)
        stats = await sim.stats()
    ledger = result.summary["ledger"]
    dropped, written = result.summary["rows_dropped"], result.summary["records_written"]
    assert 0 < dropped < 100 and dropped + written == 100
    assert ledger["dropped_rows"]["requests"] == dropped  # one paid request per dropped row, no more
    assert 0 < ledger["dropped_rows"]["total_tokens"] < ledger["totals"]["total_tokens"]
    assert ledger["totals"]["requests"] - ledger["dropped_rows"]["requests"] == written
    assert ledger_tokens(ledger["totals"]) == sim_tokens(stats)


async def test_an_extended_run_adds_to_the_manifests_ledger(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, usage_details=True, models=("sim-small",))
    async with SimulatorServer(sim_config) as sim:
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, row_group_size=10))
        first = await run_job(config, 20, output=tmp_path)
        after_first = sim_tokens(await sim.stats())
        second = await run_job(config, 50, output=tmp_path)
        stats = await sim.stats()
    assert ledger_tokens(first.summary["ledger"]["totals"]) == after_first
    this_run = ledger_tokens(second.summary["ledger"]["totals"])
    assert this_run == {k: stats[k] - after_first[k] for k in TOKENS}  # the second run's own spend
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert ledger_tokens(manifest["ledger"]["totals"]) == sim_tokens(stats)  # both runs
    assert manifest["ledger"]["totals"]["requests"] == stats["requests_total"] == 150
    assert second.summary["ledger_all_runs"] == manifest["ledger"]


@pytest.fixture(scope="module")
def slow_sim():
    sim_config = SimulatorConfig(latency_s=0.02, capacity=32, usage_details=True, models=("sim-small",))
    with SimulatorProcess(sim_config) as server:
        yield server


def test_an_interrupted_and_resumed_run_keeps_counting_in_the_manifest(slow_sim, tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain_dict(slow_sim.base_url, row_group_size=25, seed=11)))
    out = tmp_path / "out"
    slow_sim.reset()
    command = rowloom("run", str(path), "-n", "400", "-o", str(out), "--quiet")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    wait_for_row_groups(out, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    interrupted = json.loads((out / "manifest.json").read_text())["ledger"]["totals"]
    at_interrupt = slow_sim.stats()
    # Requests in flight at Ctrl-C are abandoned: the simulator may still serve (and count) them, the client never
    # reads their usage. Everything else it served is in the ledger.
    assert interrupted["abandoned"] > 0
    replies = interrupted["requests"] - interrupted["abandoned"]
    assert replies <= at_interrupt["by_status"]["200"] <= replies + interrupted["abandoned"]
    unread = {k: at_interrupt[k] - interrupted[k] for k in TOKENS}
    assert all(n >= 0 for n in unread.values())

    rerun = subprocess.run(command, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    stats = slow_sim.stats()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    # The resumed run added exactly what it spent: the only gap left is the replies abandoned at Ctrl-C.
    assert {k: stats[k] - manifest["ledger"]["totals"][k] for k in TOKENS} == unread
    summary = json.loads((out / "summary.json").read_text())
    assert ledger_tokens(summary["ledger"]["totals"]) == {k: stats[k] - at_interrupt[k] for k in TOKENS}
    assert summary["ledger"]["totals"]["abandoned"] == 0


def test_a_killed_run_keeps_the_ledger_of_every_written_row_group_and_the_rerun_adds_to_it(slow_sim, tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain_dict(slow_sim.base_url, row_group_size=25, seed=12)))
    out = tmp_path / "out"
    command = rowloom("run", str(path), "-n", "300", "-o", str(out), "--quiet")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_row_groups(out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = json.loads((out / "manifest.json").read_text())
    # Each written row had its three requests (question, answer, review) recorded with the row group's listing.
    assert killed["ledger"]["totals"]["requests"] >= 3 * killed["records_written"] > 0
    assert killed["ledger"]["totals"]["prompt_tokens"] > 0

    rerun = subprocess.run(command, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    this_run = json.loads((out / "summary.json").read_text())["ledger"]["totals"]
    for name in (*TOKENS, "requests"):  # the rerun added to what the killed run left, never restarted from zero
        assert manifest["ledger"]["totals"][name] == killed["ledger"]["totals"][name] + this_run[name]
