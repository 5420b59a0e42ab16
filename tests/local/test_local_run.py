"""The `local` provider end to end with the real model: rows generated, schema honoured, no orphan server.

Skipped (with the install commands as the reason) when xllamacpp or the SmolLM2 model file is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.errors import UserCodeError
from rowloom.observe.events.scheduler import JobStarted
from rowloom.observe.sinks import MemorySink

from .helpers import COLOR_SCHEMA, local_config_dict, needs_model, server_pids, wait_gone

pytestmark = [needs_model, pytest.mark.slow]


async def test_run_generates_rows_with_schema_valid_structured_values_and_stops_the_server(tmp_path):
    config = DatasetConfig.from_dict(local_config_dict(slots=2))
    seen: list[int] = []
    sink = MemorySink()

    result = await run_job(
        config, 12, output=tmp_path, sink=sink, on_start=lambda scheduler, stats: seen.extend(server_pids())
    )

    table = pq.ParquetDataset(result.files).read().to_pylist()
    assert result.summary["status"] == "completed"
    assert len(table) >= 10
    for row in table:
        assert isinstance(row["line"], str) and row["line"].strip()
        pick = json.loads(row["pick"]) if isinstance(row["pick"], str) else row["pick"]
        jsonschema.validate(pick, COLOR_SCHEMA)
    # The latency limit gets room above the slots (2 x 2) and no 429 ever comes from a local server.
    [started] = [e for e in sink.events if isinstance(e, JobStarted)]
    [endpoint] = [v for v in started.capacities.values() if isinstance(v, dict) and v.get("provider") == "local"]
    assert endpoint["max_limit"] == 4
    assert result.summary["requests"]["by_outcome"].get("rate_limited", 0) == 0
    [pid] = seen
    assert wait_gone(pid, 5), "the llama.cpp server outlived the run"


def _explode(row):
    raise KeyError("a bug in user code")


async def test_server_is_stopped_when_the_run_fails(tmp_path):
    data = local_config_dict(slots=1)
    data["columns"].append({"name": "boom", "type": "custom", "function": _explode, "inputs": ["line"]})
    config = DatasetConfig.from_dict(data)
    seen: list[int] = []

    with pytest.raises((KeyError, UserCodeError)):
        await run_job(config, 4, output=tmp_path, on_start=lambda scheduler, stats: seen.extend(server_pids()))

    [pid] = seen
    assert wait_gone(pid, 5), "the llama.cpp server outlived a failed run"


def _start_cli_run(tmp_path: Path, records: int) -> subprocess.Popen[bytes]:
    config_path = tmp_path / "local.yaml"
    config_path.write_text(yaml.safe_dump(local_config_dict(slots=1)))
    command = [sys.executable, "-m", "rowloom.interface", "run", str(config_path), "-n", str(records)]
    command += ["--output", str(tmp_path / "out"), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigint_to_rowloom_run_stops_the_server_and_exits_130(tmp_path):
    proc = _start_cli_run(tmp_path, 200)
    try:
        parent = psutil.Process(proc.pid)
        _wait_for(lambda: server_pids(parent) or proc.poll() is not None, 60, "the server process")
        [pid] = server_pids(parent)
        # A second of model CPU time: the server is up and decoding the run's requests.
        _wait_for(lambda: _cpu_s(pid) > 1.0 or proc.poll() is not None, 60, "requests being served")
        assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode(errors="replace")
    assert wait_gone(pid, 5), "the llama.cpp server outlived the interrupted run"


def test_sigint_while_the_server_starts_leaves_no_process(tmp_path):
    proc = _start_cli_run(tmp_path, 50)
    try:
        parent = psutil.Process(proc.pid)
        _wait_for(lambda: server_pids(parent) or proc.poll() is not None, 60, "the server process")
        [pid] = server_pids(parent)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert wait_gone(pid, 5), "the llama.cpp server outlived a run interrupted during startup"


def test_server_exits_when_its_parent_is_killed(tmp_path):
    script = (
        "import asyncio, os\n"
        "from rowloom.config.models import ProviderConfig\n"
        "from rowloom.models.local import LocalModelServer\n"
        "async def main():\n"
        "    server = await LocalModelServer(ProviderConfig(name='l', type='local', parallel_slots=1)).start()\n"
        "    print(server.pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert wait_gone(pid, 10), "the llama.cpp server outlived a SIGKILLed parent"
