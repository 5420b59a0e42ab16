"""A real `rowloom run` with a batch column, killed while its batches run, then run again: the resumed run polls
the batches the first one created (found by the journal, or by their metadata when it died before hearing the
id) and never submits a line twice; the output holds every row exactly once. Ctrl-C says which command cancels
the batches left running, and `rowloom batches cancel` does; the next run sends only the lines they never ran."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
import pytest

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig

from .helpers import chain_dict, rowloom, run_cli, write_yaml

N = 100


@pytest.fixture
def sim(request):
    delay = getattr(request, "param", 1.0)
    config = SimulatorConfig(latency_s=0.005, capacity=64, models=("sim-small",), batch_delay_s=delay)
    with SimulatorProcess(config) as server:
        yield server


def batch_config(tmp_path: Path, base_url: str) -> Path:
    data = chain_dict(base_url, row_group_size=25, seed=11)
    data["models"].append(
        {
            "alias": "batcher",
            "provider": "sim",
            "model": "sim-small",
            "execution": "batch",
            "inference": {"max_tokens": 128},
            "batch": {"flush_after_s": 0.3, "poll_min_s": 0.2, "poll_max_s": 0.5},
        }
    )
    for column in data["columns"]:
        if column["name"] == "answer":
            column["model"] = "batcher"
    return write_yaml(tmp_path / "batch.yaml", data)


def batch_stats(sim: SimulatorProcess) -> dict[str, Any]:
    import asyncio

    async def read() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{sim.base_url.removesuffix('/v1')}/stats") as reply:
            return (await reply.json())["batches"]

    return asyncio.run(read())


def journal_records(out: Path, kind: str) -> int:
    journal = out / "batches.jsonl"
    if not journal.is_file():
        return 0
    return sum(1 for line in journal.read_text().splitlines() if f'"kind":"{kind}"' in line)


def start_and_wait(config: Path, out: Path, kind: str, timeout_s: float = 60) -> subprocess.Popen:
    """A `rowloom run` started and left running until its journal holds a `kind` record."""
    proc = subprocess.Popen(
        rowloom("run", str(config), "-n", str(N), "-o", str(out), "--quiet"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    while journal_records(out, kind) == 0:
        assert proc.poll() is None, f"the run ended before a {kind} record: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {kind} record within {timeout_s} s"
        time.sleep(0.005)
    return proc


def assert_every_row_once(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["records_written"] == N
    ids = [i for f in sorted(out.rglob("*.parquet")) for i in pq.read_table(f).column("row_id").to_pylist()]
    assert len(ids) == N == len(set(ids))


@pytest.mark.parametrize("moment", ["planned", "created", "settled"])
def test_sigkill_while_batches_run_then_resume_submits_no_line_twice(sim, tmp_path: Path, moment: str):
    config, out = batch_config(tmp_path, sim.base_url), tmp_path / "out"
    proc = start_and_wait(config, out, moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = run_cli("run", str(config), "-n", str(N), "-o", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    stats = batch_stats(sim)
    assert stats["duplicate_lines"] == 0
    assert stats["lines_submitted"] == N  # every answer went into a batch exactly once, across both runs
    assert_every_row_once(out)
    summary = json.loads((out / "summary.json").read_text())
    batches = summary["batches"]["batcher"]
    if moment != "planned":  # killed once a batch existed: the resumed run read its lines instead of sending them
        assert batches["lines_resumed"] > 0 and batches.get("lines_submitted", 0) < N
    assert "batches_left_running" not in summary


@pytest.mark.parametrize("sim", [5.0], indirect=True)  # batches outlast the CLI calls below
def test_ctrl_c_names_the_cancel_command_which_cancels_and_the_next_run_sends_only_what_never_ran(sim, tmp_path: Path):
    config, out = batch_config(tmp_path, sim.base_url), tmp_path / "out"
    proc = start_and_wait(config, out, "created")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"rowloom batches cancel {out}" in stderr.replace("\n", " ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["batches_left_running"]["batcher"]

    cancelled = run_cli("batches", "cancel", str(out))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "asked to cancel" in cancelled.stdout
    stats = batch_stats(sim)
    assert stats["batches_cancelled"] >= 1 and stats["open"] == 0, (cancelled.stdout, stats)
    status = run_cli("batches", "status", str(out))
    assert status.returncode == 0 and ": cancelled (" in status.stdout, status.stdout + status.stderr

    done = run_cli("run", str(config), "-n", str(N), "-o", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    stats = batch_stats(sim)
    assert stats["duplicate_lines"] == 0
    # Lines the cancelled batches never ran went again; the ones they finished were read, not sent again.
    assert stats["lines_submitted"] == N + stats["lines_cancelled"]
    assert_every_row_once(out)
    assert run_cli("batches", "status", str(out)).stdout.startswith("no open batches")
