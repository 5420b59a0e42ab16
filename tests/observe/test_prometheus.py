"""Live metrics: a Prometheus endpoint on 127.0.0.1 that scrapes over HTTP while a real run is going."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from typer.testing import CliRunner

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.events import Event
from rowloom.observe.prometheus import MetricsServer, PrometheusSink
from rowloom.observe.sinks import FanoutSink

from .helpers import chain_config, chain_dict

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback is never proxied


def scrape(url: str) -> str:
    with _OPENER.open(url, timeout=5) as reply:
        assert reply.status == 200
        return reply.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}" + (rf"\{{{re.escape(want)}\}}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


class _AfterRequests:
    """Sets an asyncio event once `n` requests have completed, so the test scrapes mid-run."""

    def __init__(self, n: int):
        self.n, self.seen, self.reached = n, 0, asyncio.Event()

    def emit(self, event: Event) -> None:
        if event.kind == "request_completed":
            self.seen += 1
            if self.seen >= self.n:
                self.reached.set()

    def close(self) -> None:
        return None


async def test_metrics_endpoint_scrapes_over_http_on_loopback_during_a_run(sim, tmp_path):
    metrics = PrometheusSink()
    trigger = _AfterRequests(50)
    with MetricsServer(metrics.registry, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        job = asyncio.create_task(
            run_job(chain_config(sim.base_url), 200, output=tmp_path, sink=FanoutSink([metrics, trigger]))
        )
        await asyncio.wait_for(trigger.reached.wait(), timeout=30)
        assert not job.done()
        during = await asyncio.to_thread(scrape, server.url)
        result = await job
        after = await asyncio.to_thread(scrape, server.url)

    endpoint = {"endpoint": "sim/sim-small"}
    assert sample(during, "rowloom_requests_total", **endpoint, outcome="success") >= 50
    assert 1 <= sample(during, "rowloom_request_limit", **endpoint) <= 16
    assert sample(during, "rowloom_requests_in_flight", **endpoint) is not None
    assert sample(during, "rowloom_requests_queued", **endpoint) is not None
    assert sample(during, "rowloom_records_requested") == 200

    assert sample(after, "rowloom_requests_total", **endpoint, outcome="success") == 600
    assert sample(after, "rowloom_requests_in_flight", **endpoint) == 0
    assert sample(after, "rowloom_rows_written_total") == result.summary["records_written"] == 200
    assert sample(after, "rowloom_rows_dropped_total") == 0
    assert sample(after, "rowloom_request_tokens_total", **endpoint) == result.summary["requests"]["tokens"]


async def test_token_counters_follow_the_ledger_per_column_and_count_replies_without_usage(tmp_path):
    sim_config = SimulatorConfig(
        latency_s=0.002, capacity=16, usage_details=True, omit_usage_rate=0.3, models=("sim-small",)
    )
    async with SimulatorServer(sim_config) as sim:
        data = chain_dict(sim.base_url)
        data["models"][0]["pricing"] = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3}
        config = DatasetConfig.from_dict(data)
        metrics = PrometheusSink(prices={m.alias: m.prices for m in config.models})
        result = await run_job(config, 30, output=tmp_path, sink=metrics)
    text = generate_latest(metrics.registry).decode()
    ledger = result.summary["ledger"]
    for column, counts in ledger["by_column"].items():
        found = sample(
            text, "rowloom_cost_total", column=column, currency="USD", endpoint="sim/sim-small", model="writer"
        )
        assert found == pytest.approx(counts["cost"]) and found > 0
    for column, counts in ledger["by_column"].items():
        where = {"column": column, "endpoint": "sim/sim-small"}  # labels in the order the text format sorts them
        for kind in ("prompt", "completion", "cached", "reasoning"):
            found = sample(text, "rowloom_tokens_total", **where, kind=kind, model="writer")
            assert (found or 0) == counts[f"{kind}_tokens"]
        found = sample(text, "rowloom_requests_unknown_usage_total", **where, model="writer")
        assert (found or 0) == counts["unknown_usage"]
    assert ledger["totals"]["unknown_usage"] > 0 and ledger["totals"]["cached_tokens"] > 0


def test_each_sink_has_its_own_registry():
    first, second = PrometheusSink(), PrometheusSink()  # would raise "Duplicated timeseries" on a shared registry
    assert first.registry is not second.registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_metrics_port_serves_metrics_while_the_cli_runs(tmp_path: Path):
    from rowloom.bench.sim_config import SimulatorConfig
    from rowloom.bench.sim_process import SimulatorProcess
    from rowloom.interface.cli import app

    port = _free_port()
    scrapes: list[str] = []
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                scrapes.append(scrape(f"http://127.0.0.1:{port}/metrics"))
            time.sleep(0.05)

    with SimulatorProcess(SimulatorConfig(latency_s=0.05, capacity=16, models=("sim-small",))) as sim:
        config = tmp_path / "chain.yaml"
        config.write_text(yaml.safe_dump(chain_dict(sim.base_url)))
        thread = threading.Thread(target=scraper, daemon=True)
        thread.start()
        try:
            args = ["run", str(config), "-n", "200", "-o", str(tmp_path / "out"), "-q", "--metrics-port", str(port)]
            result = CliRunner().invoke(app, args)
        finally:
            done.set()
            thread.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert f"metrics on http://127.0.0.1:{port}/metrics" in result.output
    assert any("rowloom_requests_total" in text for text in scrapes)
    with socket.socket() as s:  # the endpoint is gone with the run
        assert s.connect_ex(("127.0.0.1", port)) != 0
