"""Provider faults end to end: 500s, timeouts, malformed and truncated bodies, schema-invalid replies and
connection resets are classified and retried within bounds; every row completes with valid values, and rows
are dropped (with their reason) only when the retry budget runs out."""

from __future__ import annotations

import json

import jsonschema
import pyarrow.parquet as pq
import pytest

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.events.request import LimitChanged
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.sinks import MemorySink

from .flaky_server import FlakyServer
from .helpers import chain_dict

# Retries fast enough for a test, and enough of them that a 25% fault rate never exhausts them
# (0.25^8 per request: about one failure in 65,000 requests).
FAST_RETRIES = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 8, "circuit_breaker_s": 60}


def faulty_config(base_url: str, *, timeout_s: float = 5.0, corrections: int = 4, **admission) -> DatasetConfig:
    data = chain_dict(base_url, row_group_size=50, seed=3, request_admission={**FAST_RETRIES, **admission})
    data["providers"][0]["timeout_s"] = timeout_s
    data["columns"][-1]["max_correction_attempts"] = corrections  # review: re-asks after a schema-invalid reply
    return DatasetConfig.from_dict(data)


def assert_every_row_complete_and_valid(out, config: DatasetConfig, n: int):
    frame = pq.read_table(out / "data").to_pandas()
    assert len(frame) == n
    assert frame["row_id"].is_unique
    assert frame.notna().all().all(), "a row was written with a missing value"
    for name in ("question", "answer"):
        assert (frame[name].str.strip().str.len() > 0).all(), f"empty {name}"
    schema = next(c for c in config.columns if c.name == "review").output_schema
    for review in frame["review"]:
        jsonschema.validate(json.loads(review) if isinstance(review, str) else review, schema)
    return frame


@pytest.fixture(scope="module")
def faulty_sim():
    sim_config = SimulatorConfig(
        latency_s=0.005,
        capacity=64,
        error_rate=0.05,
        timeout_rate=0.05,
        hang_s=2.0,
        malformed_rate=0.05,
        truncated_rate=0.05,
        schema_invalid_rate=0.05,
        seed=11,
        models=("sim-small",),
    )
    with SimulatorProcess(sim_config) as sim:
        yield sim


async def test_five_percent_of_each_http_fault_still_completes_every_row(faulty_sim, tmp_path):
    n = 300
    config = faulty_config(faulty_sim.base_url, timeout_s=0.3)
    result = await run_job(config, n, output=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["records_written"] == n and summary["rows_dropped"] == 0, summary["rows_dropped_by_reason"]
    assert_every_row_complete_and_valid(tmp_path, config, n)
    # Every kind of fault happened and was retried: 500s and malformed/truncated 200s are server errors (the
    # simulator saw only the 500s as such), hung requests timed out on our side (the simulator logs 499:
    # client closed), and schema-invalid replies were re-asked (successes beyond one per cell).
    by_outcome = summary["requests"]["by_outcome"]
    by_status = faulty_sim.stats()["by_status"]
    assert 0 < by_status["500"] < by_outcome["server_error"], (by_status, by_outcome)
    assert by_outcome["timeout"] > 0 and by_status.get("499", 0) > 0, (by_status, by_outcome)
    assert by_outcome["success"] > 3 * n, by_outcome
    assert result.summary["rows_dropped_by_reason"] == {}


async def test_connection_closed_reset_and_cut_short_are_retried_until_every_row_completes(tmp_path):
    n = 200
    async with FlakyServer({"close": 0.07, "reset": 0.07, "partial": 0.07}, seed=5) as server:
        config = faulty_config(server.base_url)
        await run_job(config, n, output=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records_written"] == n and summary["rows_dropped"] == 0, summary["rows_dropped_by_reason"]
    assert all(count > 10 for count in server.faults.values()), server.faults
    # A close or a reset before the reply is a connection error; a body cut short is the server's error.
    by_outcome = summary["requests"]["by_outcome"]
    assert by_outcome["server_error"] == server.faults["partial"], (by_outcome, server.faults)
    assert by_outcome["connection_error"] == server.faults["close"] + server.faults["reset"], (
        by_outcome,
        server.faults,
    )
    assert_every_row_complete_and_valid(tmp_path, config, n)


async def test_rows_are_dropped_with_their_reason_only_when_the_retry_budget_runs_out(tmp_path):
    n = 200
    sim_config = SimulatorConfig(latency_s=0.002, capacity=64, error_rate=0.4, seed=2, models=("sim-small",))
    with SimulatorProcess(sim_config) as sim:
        # Four attempts (the fewest with which three failures in a row judge an endpoint down, the default).
        config = faulty_config(sim.base_url, max_attempts=4)
        data = config.to_dict()
        data["run"]["max_error_rate"] = 1.0
        config = DatasetConfig.from_dict(data)
        await run_job(config, n, output=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    dropped = summary["rows_dropped_by_reason"]
    # Four attempts at 40% failure: about 2.6% of requests fail for good, so some rows go, each with its reason.
    assert summary["rows_dropped"] > 0
    # Random failures among successes are the rows' own: they do not keep the endpoint down.
    assert summary["endpoints"]["sim/sim-small"]["down_s"] < 2.0, summary["endpoints"]
    assert set(dropped) <= {"question:server_error", "answer:server_error", "review:server_error"}, dropped
    assert summary["records_written"] + summary["rows_dropped"] == n
    assert_every_row_complete_and_valid(tmp_path, config, summary["records_written"])


async def starvation_run(tmp_path, timeout_s: float = 5.0, **faults) -> tuple[dict, MemorySink]:
    """200 rows against a capacity-8 simulator with `faults`, AIMD alone: every row written, and the limit's
    lowest point above half the capacity (the capacity's 429s cut it to 6 at most once); the summary and events."""
    sim_config = SimulatorConfig(latency_s=0.02, capacity=8, seed=5, models=("sim-small",), **faults)
    sink = MemorySink()
    with SimulatorProcess(sim_config) as sim:
        config = faulty_config(sim.base_url, timeout_s=timeout_s, algorithm="aimd")
        await run_job(config, 200, output=tmp_path, sink=sink)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records_written"] == 200 and summary["rows_dropped"] == 0, summary["rows_dropped_by_reason"]
    lowest = min(event.new for event in sink.of(LimitChanged))
    assert lowest >= 4, [(e.old, e.new, e.reason) for e in sink.of(LimitChanged)]
    return summary, sink


async def test_hung_requests_among_prompt_replies_do_not_starve_the_endpoint(tmp_path):
    # A tenth of the requests are held open long past the client's timeout; the rest are answered at once. Each
    # timeout is overtaken by later requests' replies: the hung request's own fault, not the server's load.
    # Before, every timeout cut the limit as overload, down to one request in flight for the rest of the run.
    summary, sink = await starvation_run(tmp_path, timeout_s=0.3, timeout_rate=0.1, hang_s=10.0)
    timeouts = summary["requests"]["by_outcome"]["timeout"]
    assert timeouts > 20, summary["requests"]
    final = sink.of(CapacitySnapshot)[-1].endpoints["sim/sim-small"]
    assert final["stragglers"] >= timeouts // 2, (final, timeouts)
    assert summary["endpoints"]["sim/sim-small"]["stragglers"] == final["stragglers"]  # counted from the events


async def test_overloads_answered_at_any_load_do_not_starve_the_endpoint(tmp_path):
    # A tenth of the requests are answered 529 at once, whatever the load: each is retried, but a cut does not
    # stop them, and they come alone, not in the runs that too much concurrency makes. Before, each one cut the
    # limit, down to one request in flight.
    summary, sink = await starvation_run(tmp_path, overload_rate=0.1, overload_status=529)
    final = sink.of(CapacitySnapshot)[-1].endpoints["sim/sim-small"]
    assert final["background_overloads"] > 20, final
    assert summary["endpoints"]["sim/sim-small"]["background_overloads"] == final["background_overloads"]
