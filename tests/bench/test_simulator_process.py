"""The simulator as a separate OS process and as the `rowloom sim` command."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from types import SimpleNamespace

import aiohttp
import orjson
import psutil
import pytest
import typer
from typer.testing import CliRunner

from rowloom.bench.sim_cli import sim
from rowloom.bench.simulator import SimulatorConfig, SimulatorProcess

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        process = psutil.Process(pid)
        process.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return process.status() == psutil.STATUS_ZOMBIE
    return True


def test_simulator_process_serves_reports_stats_and_stops_cleanly():
    config = SimulatorConfig(latency_s=0, capacity=5, mode="vllm")
    with SimulatorProcess(config) as sim:
        pid = sim.pid
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"

        async def two_requests() -> list[int]:
            async with aiohttp.ClientSession() as http:
                statuses = []
                for _ in range(2):
                    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                    async with http.post(f"{sim.base_url}/chat/completions", json=body) as response:
                        statuses.append(response.status)
                return statuses

        assert asyncio.run(two_requests()) == [200, 200]
        stats = sim.stats()
        assert stats["by_status"] == {"200": 2}
        assert stats["capacity"] == 5
        assert stats["mode"] == "vllm"
        sim.reset()
        assert sim.stats()["requests_total"] == 0
    assert pid is not None
    assert _gone(pid)


def test_simulator_process_exits_when_its_parent_dies():
    script = textwrap.dedent(
        """
        import time
        from rowloom.bench.simulator import SimulatorConfig, SimulatorProcess
        sim = SimulatorProcess(SimulatorConfig(latency_s=0)).start()
        print(sim.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(child_pid), "the simulator outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_module_entry_point_serves_with_cli_flags_and_stops_on_sigterm():
    command = [sys.executable, "-m", "rowloom.bench.simulator", "--port", "0", "--mode", "vllm"]
    command += ["--capacity", "3", "--latency", "0", "--rpm", "100"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line
        with NO_PROXY.open(match.group(1) + "/stats", timeout=5) as response:
            stats = orjson.loads(response.read())
        assert (stats["mode"], stats["capacity"]) == ("vllm", 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_module_entry_point_takes_the_outage_and_reply_flags():
    command = [sys.executable, "-m", "rowloom.bench.simulator", "--port", "0", "--latency", "0"]
    command += ["--reply-words-min", "3", "--reply-words-max", "3", "--outages", "0.5+inf"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line

        async def tokens_then_refused() -> tuple[int, bool]:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{match.group(1)}/chat/completions", json=body) as response:
                    tokens = (await response.json())["usage"]["completion_tokens"]
                await asyncio.sleep(1.0)  # past the window's start at 0.5 s: down for good
                try:
                    async with http.post(f"{match.group(1)}/chat/completions", json=body):
                        return tokens, False
                except aiohttp.ClientConnectionError:
                    return tokens, True

        assert asyncio.run(tokens_then_refused()) == (3, True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_with_sim_spec_takes_list_settings_separated_by_semicolons():
    from rowloom.interface.with_sim import SpecError, simulator_config

    no_models = SimpleNamespace(models=[], providers=[])
    spec = "mode=vllm,max_queued=2,outages=3+20;40+5;60:5:90,overload_status=529,reply_words_max=600"
    sim = simulator_config(no_models, spec)  # type: ignore[arg-type]
    assert (sim.mode, sim.max_queued, sim.overload_status, sim.reply_words_max) == ("vllm", 2, 529, 600)
    assert len(sim.outages) == 3
    with pytest.raises(SpecError, match="reply_words_min"):
        simulator_config(no_models, "reply_words_min=90")  # type: ignore[arg-type]


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("sim")(sim)
    app.command("noop")(lambda: None)  # two commands, so `sim` is addressed by name as in the main CLI
    return app


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--host", "0.0.0.0"], "loopback"),
        (["--capacity", "0"], "capacity"),
        (["--capacity-schedule", "3:1,1:2"], "strictly increase"),
        (["--error-rate", "0.8", "--overload-rate", "0.8"], "exceeds 1"),
        (["--outages", "3+20,10+1"], "windows must not overlap"),
        (["--overload-status", "500"], "overload_status"),
        (["--error-status", "503"], "error_status"),
        (["--max-queued", "2"], "max_queued applies to mode='vllm' only"),
        (["--reply-words-min", "70"], "reply_words_min (70) exceeds reply_words_max (60)"),
        (["--omit-usage-rate", "1.5"], "omit_usage_rate"),
    ],
)
def test_cli_refuses_bad_settings_before_serving(args: list[str], fragment: str):
    result = CliRunner().invoke(_cli(), ["sim", *args])
    assert result.exit_code == 2
    assert fragment in result.output


def test_simulator_process_enforces_its_api_key_without_putting_it_on_the_command_line():
    with SimulatorProcess(SimulatorConfig(latency_s=0, api_key="sk-secret-sim")) as sim:
        assert sim.pid is not None
        assert not any("sk-secret-sim" in part for part in psutil.Process(sim.pid).cmdline())

        async def statuses() -> list[int]:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            out = []
            async with aiohttp.ClientSession() as http:
                for headers in ({}, {"Authorization": "Bearer sk-secret-sim"}):
                    async with http.post(f"{sim.base_url}/chat/completions", json=body, headers=headers) as r:
                        out.append(r.status)
            return out

        assert asyncio.run(statuses()) == [401, 200]
