"""API keys come only from the environment or a key file outside the config, and never appear in anything a run
writes or prints: a canary key is grepped for in every file of the output folder and in stdout/stderr."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.concurrency.clock import SYSTEM_CLOCK
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.runtime import RequestRuntime
from rowloom.errors import ConfigError
from rowloom.models.clients.openai import InsecureTransportError
from rowloom.models.executor import EndpointRejected
from rowloom.observe.sinks import JsonlSink, NullSink

from .flaky_server import FlakyServer
from .helpers import chain_dict, rowloom, write_yaml

CANARY = "sk-rowloom-canary-5d1e9a7c3b2f4e60-never-print-me"
CANARY_ENV = "ROWLOOM_DURABILITY_CANARY"


@pytest.fixture(scope="module")
def keyed_sim():
    sim_config = SimulatorConfig(latency_s=0.003, capacity=32, models=("sim-small",), api_key=CANARY)
    with SimulatorProcess(sim_config) as sim:
        yield sim


def assert_no_secret(texts: dict[str, bytes]) -> None:
    for where, data in texts.items():
        assert CANARY.encode() not in data, f"the API key leaked into {where}"
        assert b"Bearer" not in data, f"an Authorization header leaked into {where}"


def everything_written(out: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert files
    return files


@pytest.mark.parametrize("source", ["env", "file"])
def test_canary_key_reaches_the_provider_but_no_file_or_output(keyed_sim, source, tmp_path):
    work = tmp_path / "work"
    (work / "secrets").mkdir(parents=True)
    data = chain_dict(keyed_sim.base_url, row_group_size=20, seed=5)
    provider = data["providers"][0]
    env = {k: v for k, v in os.environ.items() if k != CANARY_ENV}
    if source == "env":
        provider["api_key_env"] = CANARY_ENV
        env[CANARY_ENV] = CANARY
    else:
        del provider["api_key_env"]
        provider["api_key_file"] = "secrets/api-key"  # relative: read from the working directory
        (work / "secrets" / "api-key").write_text(CANARY + "\n")
    config = write_yaml(work / "chain.yaml", data)
    out = tmp_path / "out"
    outputs: dict[str, bytes] = {}
    steps = [
        ["run", "chain.yaml", "-n", "60", "-o", str(out), "--events", str(out / "events.jsonl")],
        ["trace", str(out / "events.jsonl"), "-o", str(out / "trace.json")],
        ["report", str(out)],
        ["validate", "chain.yaml"],
    ]
    for args in steps:
        done = subprocess.run(rowloom(*args), cwd=work, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        outputs[f"{args[0]} stdout"] = done.stdout
        outputs[f"{args[0]} stderr"] = done.stderr
    # The simulator answers only requests carrying the canary, so 60 records prove the key was sent.
    assert b"wrote 60 records" in outputs["run stdout"]
    written = everything_written(out)
    assert {"manifest.json", "summary.json", "events.jsonl", "trace.json", "report.html"} <= set(written)
    assert_no_secret(written | outputs)
    saved = DatasetConfig.from_yaml(config).to_yaml()
    assert CANARY not in saved and "Bearer" not in saved


async def test_a_key_echoed_back_by_the_provider_is_redacted_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv(CANARY_ENV, CANARY)
    async with FlakyServer(echo_key_401=True) as server:
        # Every request is rejected; the first 401 stops the run quoting the provider's words, which land in the
        # exception, summary.json and the events: exactly where an echoed key would leak.
        data = chain_dict(server.base_url, row_group_size=20, max_error_rate=1.0)
        data["providers"][0]["api_key_env"] = CANARY_ENV
        config = DatasetConfig.from_dict(data)
        with pytest.raises(EndpointRejected) as info:
            await run_job(config, 3000, output=tmp_path, sink=JsonlSink(tmp_path / "events.jsonl"))
    message = str(info.value)
    assert f"rejected the API key (401 Unauthorized): the key in {CANARY_ENV} was refused" in message
    assert "Incorrect API key provided: <redacted>" in message
    texts = everything_written(tmp_path) | {"exception": message.encode(), "repr": repr(info.value).encode()}
    assert_no_secret(texts)


def test_missing_or_malformed_key_file_is_a_clear_error_without_its_content(tmp_path):
    data = chain_dict("http://127.0.0.1:9/v1")
    del data["providers"][0]["api_key_env"]
    cases = {
        "missing": (None, "cannot read the key file"),
        "empty": ("\n", "is empty"),
        "two lines": (f"{CANARY}\nsecond line\n", "holds more than the key"),
        "binary": (b"\xff\xfe" + CANARY.encode(), "holds more than the key"),
    }
    for case, (content, expected) in cases.items():
        key_file = tmp_path / f"key-{case.replace(' ', '-')}"
        if isinstance(content, bytes):
            key_file.write_bytes(content)
        elif content is not None:
            key_file.write_text(content)
        data["providers"][0]["api_key_file"] = str(key_file)
        config = write_yaml(tmp_path / "chain.yaml", data)
        done = subprocess.run(
            rowloom("run", str(config), "-n", "5", "-o", str(tmp_path / f"out-{case}"), "-q"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (case, done.stderr)
        stderr = " ".join(done.stderr.split())
        assert "providers.sim.api_key_file" in stderr and expected in stderr, (case, stderr)
        assert "Traceback" not in stderr and CANARY not in stderr and "second line" not in stderr


def _enter_runtime(config: DatasetConfig) -> None:
    """Open the run's request path (clients are built, nothing is sent) and close it again."""

    async def enter() -> None:
        async with RequestRuntime(config, sink=NullSink(), clock=SYSTEM_CLOCK):
            pass

    asyncio.run(enter())


def test_a_key_is_refused_over_plain_http_to_another_host_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv(CANARY_ENV, CANARY)
    # 192.0.2.1 is TEST-NET-1; no request is ever sent in this test: the clients are only built.
    data = chain_dict("http://192.0.2.1/v1")
    data["providers"][0]["api_key_env"] = CANARY_ENV
    config_file = write_yaml(tmp_path / "remote.yaml", data)
    with pytest.raises(InsecureTransportError) as info:
        _enter_runtime(DatasetConfig.from_yaml(config_file))
    message = str(info.value)
    assert "providers.sim.base_url" in message and "allow_insecure: true" in message and "https://" in message
    assert CANARY not in message and "Bearer" not in message

    data["providers"][0]["allow_insecure"] = True
    _enter_runtime(DatasetConfig.from_yaml(write_yaml(tmp_path / "trusted.yaml", data)))

    data["providers"][0]["allow_insecure"] = False
    data["providers"][0]["base_url"] = "https://192.0.2.1/v1"
    _enter_runtime(DatasetConfig.from_yaml(write_yaml(tmp_path / "tls.yaml", data)))

    for loopback in ("http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1"):
        data["providers"][0]["base_url"] = loopback
        _enter_runtime(DatasetConfig.from_dict(data))


def test_cli_refuses_an_insecure_key_with_one_message(tmp_path):
    data = chain_dict("http://192.0.2.1/v1")
    data["providers"][0]["api_key_env"] = CANARY_ENV
    config = write_yaml(tmp_path / "remote.yaml", data)
    done = subprocess.run(
        rowloom("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "-q"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, CANARY_ENV: CANARY},
    )
    assert done.returncode == 1
    stderr = " ".join(done.stderr.split())
    assert "refusing to send an API key over plain http://" in stderr and "allow_insecure" in stderr
    assert "Traceback" not in stderr and CANARY not in done.stderr + done.stdout


def test_key_sources_are_exclusive_and_the_config_holds_no_key():
    with pytest.raises(ConfigError, match="not both"):
        DatasetConfig.from_dict(
            {
                "providers": [
                    {"name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "A", "api_key_file": "k"}
                ],
                "columns": [{"name": "a", "type": "uuid"}],
            }
        )
    with pytest.raises(ConfigError) as info:  # there is no field for the key itself
        DatasetConfig.from_dict(
            {
                "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key": CANARY}],
                "columns": [{"name": "a", "type": "uuid"}],
            }
        )
    assert "providers[0] (p).api_key" in str(info.value) and "api_key_env" in str(info.value)
    assert CANARY not in str(info.value)
