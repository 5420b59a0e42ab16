"""`rowloom bench local` and `rowloom bench limits` without their long runs: the workloads are valid configs,
figures come from a run's events, and the virtual-time table has one row per server condition."""

from __future__ import annotations

import pytest

from rowloom.bench import limit_sim
from rowloom.bench import local as bench_local
from rowloom.bench.limit_sim import ServerModel
from rowloom.config import DatasetConfig
from rowloom.observe.events.request import RequestAdmitted, RequestCompleted
from rowloom.observe.sinks import MemorySink


@pytest.mark.parametrize("mode", list(bench_local.MODES))
def test_every_local_mode_is_a_valid_config_with_its_admission_setting(mode):
    base_url = "http://127.0.0.1:9/v1" if mode.endswith("_openai") else None
    config = DatasetConfig.from_dict(bench_local.workload(mode, base_url=base_url))
    admission, ceiling = bench_local.MODES[mode]
    assert config.models[0].max_parallel_requests == ceiling
    assert config.run.request_admission.algorithm == admission.get("algorithm", "composite")
    assert config.providers[0].type == ("openai" if base_url else "local")


def test_local_figures_come_from_the_runs_events():
    sink = MemorySink()
    for i, (at, limit) in enumerate([(0.0, 4), (0.5, 5)]):
        sink.emit(
            RequestAdmitted(ts=at, key="k", alias="w", group="g", lease=i, wait_s=0.0, in_flight=i + 1, limit=limit)
        )
    sink.emit(
        RequestCompleted(
            ts=2.0,
            key="k",
            alias="w",
            group="g",
            lease=0,
            outcome="success",
            latency_s=2.0,
            tokens=80,
            completion_tokens=60,
        )
    )
    sink.emit(
        RequestCompleted(
            ts=4.0,
            key="k",
            alias="w",
            group="g",
            lease=1,
            outcome="success",
            latency_s=3.5,
            tokens=70,
            completion_tokens=40,
        )
    )
    figures = bench_local.measure(sink)
    assert figures["completion_tokens_per_s"] == 25.0  # 100 tokens over the 4 s from first admission
    assert figures["latency_p50_s"] == 2.75 and figures["peak_in_flight"] == 2 and figures["limit_final"] == 5


def test_limits_table_has_a_row_per_condition_with_its_figures(monkeypatch):
    conditions = (("hosted 8", ServerModel("hosted", 8, 0.1, 0.3), None, 32, 10.0),)
    monkeypatch.setattr(limit_sim, "CONDITIONS", conditions)
    rows = limit_sim.table(seeds=(0,))
    assert [r["condition"] for r in rows] == ["hosted 8"]
    assert 0.5 < rows[0]["throughput_over_peak_min"] <= 1.05 and rows[0]["share_rejected_max"] < 0.1
    assert limit_sim.markdown(rows).splitlines()[2].startswith("| hosted 8 |")
