"""The reply cache against the simulator: a rerun pays only for the column that changed, identical requests in
flight go out once, and a cache that cannot be used costs its savings, never the run."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import warnings
import zlib
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.errors import RowloomWarning
from rowloom.models.cache.store import FILE_NAME
from rowloom.observe.sinks import MemorySink

from .helpers import chain_dict

RECORDS = 200


def chain(url: str, cache: Path, review: str | None = None, **cache_settings) -> DatasetConfig:
    data = chain_dict(url, row_group_size=50, seed=3, max_error_rate=1.0)
    data["run"]["cache"] = {"mode": "readwrite", "path": str(cache), **cache_settings}
    data["columns"][-1]["max_correction_attempts"] = 6  # re-asks, yet no row dropped: the rows line up
    if review is not None:
        data["columns"][-1]["prompt"] = review
    return DatasetConfig.from_dict(data)


def requests_by_column(sink: MemorySink) -> Counter[str]:
    return Counter(e.group for e in sink.events if e.kind == "request_completed")


def hits_by_column(sink: MemorySink) -> Counter[str]:
    return Counter(e.group for e in sink.events if e.kind == "cache_hit")


async def test_rerun_after_changing_one_prompt_asks_only_for_that_column(tmp_path):
    cache = tmp_path / "cache"
    sim_config = SimulatorConfig(latency_s=0.001, capacity=64, models=("sim-small",), schema_invalid_rate=0.2, seed=4)
    async with SimulatorServer(sim_config) as sim:
        first = await run_job(chain(sim.base_url, cache), RECORDS, output=tmp_path / "first")
        before = (await sim.stats())["requests_total"]
        sink = MemorySink()
        changed = chain(sim.base_url, cache, review="Grade strictly: the answer {{ answer }} to {{ question }}.")
        second = await run_job(changed, RECORDS, output=tmp_path / "second", sink=sink)
        sent = (await sim.stats())["requests_total"] - before
    asked = requests_by_column(sink)
    assert asked["question"] == asked["answer"] == 0
    assert asked["review"] == sent >= RECORDS  # every row's review, plus its re-asks
    assert hits_by_column(sink) == {"question": RECORDS, "answer": RECORDS}
    assert first.summary["cache"]["hits"] == 0 and first.summary["cache"]["misses"] == before
    assert second.summary["cache"] | {"tokens_saved": 0} == {
        "hits": 2 * RECORDS,
        "misses": sent,
        "requests_saved": 2 * RECORDS,
        "tokens_saved": 0,
        "cost_saved": None,  # the chain's model has no prices
        "currency": None,
    }
    assert second.summary["cache"]["tokens_saved"] > 0
    assert second.summary["ledger"]["by_column"].keys() == {"review"}  # hits spend nothing
    old, new = (pq.read_table(run.output / "data").to_pandas() for run in (first, second))
    assert new[["question", "answer"]].equals(old[["question", "answer"]])


async def test_identical_requests_in_flight_reach_the_provider_once(tmp_path):
    from rowloom.concurrency.clock import SYSTEM_CLOCK
    from rowloom.engine.runtime import RequestRuntime
    from rowloom.models.types import ChatRequest

    async with SimulatorServer(SimulatorConfig(latency_s=0.2, capacity=64, models=("sim-small",))) as sim:
        config = chain(sim.base_url, tmp_path / "cache")
        sink = MemorySink()
        async with RequestRuntime(config, sink=sink, clock=SYSTEM_CLOCK) as runtime:
            request = ChatRequest(model="sim-small", messages=({"role": "user", "content": "same words"},))
            replies = await asyncio.gather(*(runtime.executor.chat("writer", request) for _ in range(50)))
            again = await runtime.executor.chat("writer", request)  # after: from the store
        stats = await sim.stats()
    assert stats["requests_total"] == 1
    assert {r.text for r in replies} == {again.text}
    kinds = Counter(e.kind for e in sink.events if e.kind.startswith("cache"))
    assert kinds == {"cache_hit": 50, "cache_miss": 1}
    assert Counter(e.source for e in sink.events if e.kind == "cache_hit") == {"flight": 49, "store": 1}


async def test_an_unwritable_cache_folder_warns_and_the_run_goes_on_uncached(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    async with SimulatorServer(SimulatorConfig(latency_s=0.001, capacity=64, models=("sim-small",))) as sim:
        with pytest.warns(RowloomWarning, match=r"reply cache folder .*a-file.*cannot be used") as caught:
            result = await run_job(chain(sim.base_url, blocker / "cache"), 20, output=tmp_path / "out")
    assert result.summary["records_written"] == 20
    assert result.summary["cache"]["hits"] == result.summary["cache"]["misses"] == 0
    assert len([w for w in caught if issubclass(w.category, RowloomWarning)]) == 1
    warnings.resetwarnings()


async def test_damaged_entries_are_fetched_again_and_the_run_completes(tmp_path):
    cache = tmp_path / "cache"
    async with SimulatorServer(SimulatorConfig(latency_s=0.001, capacity=64, models=("sim-small",))) as sim:
        await run_job(chain(sim.base_url, cache), 40, output=tmp_path / "first")
        with sqlite3.connect(cache / FILE_NAME) as db:
            damaged = db.execute("UPDATE replies SET payload = substr(payload, 2) WHERE key < x'30'").rowcount
        before = (await sim.stats())["requests_total"]
        with pytest.warns(RowloomWarning, match=f"{cache / FILE_NAME} holds damaged entries"):
            result = await run_job(chain(sim.base_url, cache), 40, output=tmp_path / "second")
        sent = (await sim.stats())["requests_total"] - before
    assert damaged > 0 and sent == damaged == result.summary["cache"]["misses"]
    assert result.summary["records_written"] == 40
    warnings.resetwarnings()


def sound_entries(folder: Path) -> tuple[int, int]:
    """(entries, entries whose checksum holds) of the cache in `folder`, after SQLite's own integrity check."""
    with sqlite3.connect(folder / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT key, payload, checksum FROM replies").fetchall()
    return len(rows), sum(zlib.crc32(payload, zlib.crc32(key)) == checksum for key, payload, checksum in rows)


def _run_in_process(config: DatasetConfig, output: Path) -> None:
    result = asyncio.run(run_job(config, 50, output=output))
    assert result.summary["records_written"] == 50


def test_two_processes_at_once_share_one_cache_folder(tmp_path):
    # Forked rather than `rowloom run` started twice: the same run path, without two interpreters' start-up.
    cache = tmp_path / "cache"
    with SimulatorProcess(SimulatorConfig(latency_s=0.005, capacity=64, models=("sim-small",))) as sim:
        config = chain(sim.base_url, cache)
        fork = multiprocessing.get_context("fork")
        runs = [fork.Process(target=_run_in_process, args=(config, tmp_path / name)) for name in ("a", "b")]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=60)
    assert [run.exitcode for run in runs] == [0, 0]
    entries, sound = sound_entries(cache)
    assert entries == sound >= 150  # each row's question, answer and review (the same rows: shared or raced)
