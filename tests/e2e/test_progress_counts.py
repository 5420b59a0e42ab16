"""Progress counts rows the moment they finish, long before their row group is written, and ends where
summary.json does (the simulator on 127.0.0.1, real HTTP)."""

from __future__ import annotations

import json

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.progress import RunProgress
from rowloom.observe.events.base import Event

from .helpers import chain_dict


class Sampler:
    """An event sink that notes (rows done, rows dropped, records written) whenever a request completes."""

    def __init__(self, progress: RunProgress):
        self.progress = progress
        self.samples: list[tuple[int, int, int]] = []

    def emit(self, event: Event) -> None:
        if event.kind == "request_completed":
            p = self.progress
            self.samples.append((p.rows_done, p.rows_dropped, p.records_written))

    def close(self) -> None:
        return None


async def test_rows_count_before_the_first_row_group_is_written_and_the_end_matches_the_summary(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.002, capacity=32, schema_invalid_rate=0.6, seed=3, models=("sim-small",))
    progress = RunProgress()
    sampler = Sampler(progress)
    async with SimulatorServer(sim_config) as sim:
        # One row group of 40 rows: it is written only once every row has finished.
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, row_group_size=40, max_error_rate=1.0))
        await run_job(config, 40, output=tmp_path, sink=sampler, progress=progress)
    summary = json.loads((tmp_path / "summary.json").read_text())
    counted_early = [(done, dropped) for done, dropped, written in sampler.samples if written == 0 and done > 0]
    assert counted_early and max(done for done, _ in counted_early) > 10
    assert any(dropped > 0 for _, dropped, _ in sampler.samples)  # dropped rows count as they drop, too
    assert summary["rows_dropped"] > 0
    assert progress.records_written == progress.rows_done == summary["records_written"]
    assert progress.rows_dropped == summary["rows_dropped"]
    assert progress.rows_done + progress.rows_dropped == 40
