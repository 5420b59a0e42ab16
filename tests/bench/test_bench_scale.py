"""`rowloom bench scale` at a tiny size: the document's shape and its checks (no timing is asserted)."""

from __future__ import annotations

import copy

import pytest

from rowloom.bench import scale
from rowloom.config import DatasetConfig


@pytest.mark.parametrize("workload", sorted(scale.WORKLOADS))
def test_every_scale_workload_is_a_valid_config_with_its_llm_columns(workload):
    config = DatasetConfig.from_dict(scale.config_dict(workload))
    llm = [c.name for c in config.columns if c.model_alias == "writer"]
    assert len(llm) == {"chain3": 3, "fanout50": 50}[workload]


def test_a_fixed_limit_run_keeps_the_models_limit_and_says_so(tmp_path):
    config = DatasetConfig.from_dict(scale.config_dict("chain3", fixed_limit=4))
    assert config.run.request_admission.algorithm == "fixed" and config.models[0].max_parallel_requests == 4
    assert DatasetConfig.from_dict(scale.config_dict("chain3")).run.request_admission.algorithm != "fixed"
    figures = scale.run_one("chain3", 30, tmp_path / "run", fixed_limit=4)
    assert (figures["limit"], figures["records_written"], figures["requests"]) == ("fixed at 4", 30, 90)
    limits = [line for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines() if "limit_changed" in line]
    assert limits == []  # the limit never moved


@pytest.mark.parametrize("option", [["--fixed-limit"], ["--fixed-limit=0"], ["--fixed"]])
def test_the_scale_module_refuses_an_option_it_does_not_know_or_a_limit_that_is_no_count(option, capsys):
    with pytest.raises(SystemExit) as exited:
        scale.main(["chain3", "30", "unused", *option])
    assert exited.value.code == 2 and "--fixed" in capsys.readouterr().err


@pytest.mark.slow
def test_scale_document_has_every_size_the_fan_out_the_report_http_and_each_target_judged():
    document = scale.run(sizes=(200, 300), fan_out_records=20, repeats=1, http_records=100)

    assert set(document["chain3"]) == {"200", "300"}
    for size, summary in document["chain3"].items():
        run = summary["runs"][0]
        assert (run["records_written"], run["rows_dropped"]) == (int(size), 0)
        assert run["requests"] == run["tasks"] == 3 * int(size)  # the instant client answers each at once
        assert run["cpu_ms_per_task"] > 0 and run["dispatch_cpu_ms_per_task"] > 0 and run["peak_rss_mb"] > 0
    fan = document["fanout50"]["runs"][0]
    assert fan["requests"] == fan["tasks"] == 50 * 20
    assert document["report"]["peak_rss_mb"] > 0 and document["report"]["events_mb"] > 0
    ratio = document["fanout50"]["dispatch_cpu_ms_per_task"] / document["chain3"]["200"]["dispatch_cpu_ms_per_task"]
    assert document["dispatch_ratio"] == round(ratio, 3)
    http = document["http"]["runs"][0]
    assert (http["client"], http["records_written"], http["requests"]) == ("http", 100, 300)
    assert http["server_cpu_ms_per_request"] > 0 and http["client_cpu_over_server"] > 0
    assert [c["held"] for c in document["checks"]] == [True] * 5 + [False]
    assert "over HTTP, 100 records" in document["checks"][-1]["target"]
    assert "| chain3 over HTTP | 100 |" in scale.markdown(document)
    assert all(isinstance(c["met"], bool) for c in document["checks"])
    assert "| target | figure | met |" in scale.markdown(document)

    # A missed target that --check holds is reported; the client CPU target (not held) never is.
    missed = copy.deepcopy(document)
    missed["dispatch_ratio"] = 1.6
    missed["http"]["cpu_ms_per_request"] = 99.0
    missed["checks"] = scale.checks(missed)
    assert not next(c for c in missed["checks"] if "client CPU" in c["target"])["met"]
    assert any("fan-out" in f for f in scale.failed_checks(missed))
    assert not any("client CPU" in f for f in scale.failed_checks(missed))
