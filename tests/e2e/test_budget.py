"""The spend budget against the simulator's own counts, with real `rowloom run` subprocesses: a run stopped at 10%,
50% and 100% of the full run's cost never spends more, stops with one clear line and its own exit status, keeps
every complete row group, and finishes after the budget is raised, counting both parts."""

from __future__ import annotations

import json
import re
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.config.pricing import Pricing
from rowloom.engine.job import run_job
from rowloom.errors import BudgetReached

from .helpers import chain_dict
from .test_interrupt_and_resume import rowloom

PRICES = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cached_input_per_mtok": 0.5}
RECORDS = 120
EXIT_BUDGET = 3


def priced_chain(base_url: str, budget: dict | None = None, **run) -> dict:
    data = chain_dict(base_url, row_group_size=20, seed=21, **run)
    data["models"][0]["pricing"] = dict(PRICES)
    if budget is not None:
        data["run"]["budget"] = budget
    return data


def sim_cost(stats: dict) -> float:
    """What the simulator served, at the test's prices: the provider's bill."""
    prices = Pricing(**PRICES)
    return prices.cost(stats["prompt_tokens"], stats["completion_tokens"], stats["cached_tokens"])


@pytest.fixture(scope="module")
def sim():
    config = SimulatorConfig(latency_s=0.01, capacity=32, usage_details=True, models=("sim-small",), seed=3)
    with SimulatorProcess(config) as server:
        yield server


@pytest.fixture(scope="module")
def full_cost(sim, tmp_path_factory):
    """The cost of the whole run, measured once without a budget."""
    path = tmp_path_factory.mktemp("full") / "chain.yaml"
    path.write_text(yaml.safe_dump(priced_chain(sim.base_url)))
    sim.reset()
    done = subprocess.run(rowloom("run", str(path), "-n", str(RECORDS), "-o", str(path.parent / "out"), "-q"))
    assert done.returncode == 0
    summary = json.loads((path.parent / "out" / "summary.json").read_text())
    assert summary["ledger"]["totals"]["cost"] == pytest.approx(sim_cost(sim.stats()), rel=1e-9)
    return summary["ledger"]["totals"]["cost"]


@pytest.mark.parametrize("share", [0.1, 0.5, 1.0])
def test_a_cost_budget_is_never_exceeded_and_a_raised_one_resumes_to_the_end(sim, full_cost, tmp_path, share):
    budget = round(full_cost * share, 6)
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(priced_chain(sim.base_url, {"max_cost": budget})))
    out = tmp_path / "out"
    command = rowloom("run", str(path), "-n", str(RECORDS), "-o", str(out), "-q")
    sim.reset()
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=120)
    spent = sim_cost(sim.stats())
    assert spent <= budget, f"spent {spent} of {budget}"
    assert stopped.returncode == EXIT_BUDGET, stopped.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    written = manifest["records_written"]
    line = stopped.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"budget reached: [0-9.,]+ of [0-9.,]+ USD spent; {written:,} of {RECORDS:,} records written; "
        r"raise run\.budget\.max_cost and run the same command to resume",
        line,
    ), line
    # Every complete row group is on disk, whole; nothing else is.
    assert written < RECORDS and manifest["complete"] is False
    for entry in manifest["row_groups"]:
        assert pq.read_metadata(out / entry["file"]).num_rows == entry["rows"] == 20
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        e["file"].removeprefix("data/") for e in manifest["row_groups"]
    )
    # What the manifest charged covers the bill (the worst cases of replies still in flight at the stop included).
    assert spent <= manifest["spend"]["cost"] + 1e-12 and manifest["spend"]["cost"] <= budget
    assert manifest["ledger"]["totals"]["cost"] == pytest.approx(spent, rel=1e-9)

    # Raised: the same command resumes and finishes; the ledger counts both runs, the budget both runs' spend.
    config = yaml.safe_load(path.read_text())
    config["run"]["budget"]["max_cost"] = round(full_cost * 3, 6)
    path.write_text(yaml.safe_dump(config))
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["records_written"] == RECORDS
    stats = sim.stats()
    assert manifest["ledger"]["totals"]["cost"] == pytest.approx(sim_cost(stats), rel=1e-9)
    assert manifest["ledger"]["totals"]["requests"] == stats["requests_total"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spend"]["all_runs"]["cost"] == pytest.approx(manifest["spend"]["cost"])
    assert summary["spend"]["all_runs"]["cost"] >= sim_cost(stats) - 1e-12
    assert summary["records_resumed"] == written


async def test_token_and_request_limits_hold_and_a_row_group_with_a_refused_cell_is_not_written(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.005, capacity=16, models=("sim-small",), seed=4)
    async with SimulatorServer(sim_config) as server:
        for budget in ({"max_tokens": 20_000}, {"max_requests": 130}):
            out = tmp_path / next(iter(budget))
            config = DatasetConfig.from_dict(priced_chain(server.base_url, budget))
            before = await server.stats()
            with pytest.raises(BudgetReached) as caught:
                await run_job(config, RECORDS, output=out)
            stats = await server.stats()
            tokens = sum(stats[k] - before[k] for k in ("prompt_tokens", "completion_tokens"))
            requests = stats["requests_total"] - before["requests_total"]
            assert tokens <= budget.get("max_tokens", tokens) and requests <= budget.get("max_requests", requests)
            limit = next(iter(budget))
            assert caught.value.limit == limit and f"raise run.budget.{limit}" in str(caught.value)
            summary = json.loads((out / "summary.json").read_text())
            assert summary["status"] == "budget_reached" and summary["message"] == str(caught.value)
            # Only whole row groups were written: every row of each has all three generated columns.
            table = pq.read_table(out / "data")
            assert table.num_rows == summary["records_written"] == 20 * summary["row_groups_written"] > 0
            assert all(v is not None for v in table.column("review").to_pylist())


async def test_a_budget_already_spent_by_earlier_runs_stops_a_resume_at_once(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=16, models=("sim-small",), seed=5)
    async with SimulatorServer(sim_config) as server:
        first = await run_job(DatasetConfig.from_dict(priced_chain(server.base_url)), 40, output=tmp_path)
        spent = first.summary["spend"]["all_runs"]["cost"]
        assert spent == pytest.approx(first.summary["ledger"]["totals"]["cost"]) and spent > 0
        # Extended to 80 records with a budget of what the first 40 cost: no request fits, nothing is sent.
        config = DatasetConfig.from_dict(priced_chain(server.base_url, {"max_cost": spent}))
        before = await server.stats()
        with pytest.raises(BudgetReached, match=r"40 of 80 records written"):
            await run_job(config, 80, output=tmp_path)
        assert (await server.stats())["requests_total"] == before["requests_total"]
