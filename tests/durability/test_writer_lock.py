"""Two real `rowloom run` processes on one output folder: the second is refused naming the first, the first's
rows are untouched; a lock left by a killed run is taken over with a warning; Ctrl-C releases the lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pyarrow import fs

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.output_location import redact
from rowloom.engine.output_lock import LockHolder
from rowloom.errors import OutputError, RowloomWarning

from .helpers import chain_dict, listed_table, read_manifest, rowloom, run_cli, write_yaml

N = 40
GROUP = 10
LOCK = "rowloom.lock"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.2, capacity=64, models=("sim-small",))) as server:
        yield server


def squeeze(text: str) -> str:
    return " ".join(text.split())


def _config(sim, tmp_path: Path, parallel: int = 4) -> Path:
    """examples/chain.yaml at 4 requests in flight against a 0.2 s simulator: a run of N rows lasts ~6 s. A rerun
    may go faster (`parallel`): the request ceiling is not part of what a resume checks."""
    data = chain_dict(sim.base_url, row_group_size=GROUP, seed=7)
    data["models"][0]["max_parallel_requests"] = parallel
    return write_yaml(tmp_path / f"chain-{parallel}.yaml", data)


def _start(config: Path, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as err:
        return subprocess.Popen(
            rowloom("run", str(config), "-n", str(N), "-o", str(out), "-q"),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int = 1, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        manifest = read_manifest(out)
        if manifest and sum(g["rows"] for g in manifest["row_groups"]) >= rows:
            return
        assert proc.poll() is None, "the run ended before writing a row group"
        time.sleep(0.02)
    raise AssertionError("no row group was written in time")


def test_a_second_run_on_a_folder_being_written_is_refused_naming_the_first(sim, tmp_path):
    config = _config(sim, tmp_path)
    out = tmp_path / "out"
    first = _start(config, out, tmp_path / "first.txt")
    try:
        _wait_for_rows(out, first)
        holder = json.loads((out / LOCK).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        # Paused mid-run (it keeps its lock), so it is still writing however long the second takes to start on a
        # loaded machine; it goes on once the second has been refused.
        first.send_signal(signal.SIGSTOP)
        try:
            files_before = sorted(p.name for p in (out / "data").iterdir())
            second = run_cli("run", str(config), "-n", str(N), "-o", str(out), "-q", timeout=60)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1, second.stderr
        text = squeeze(second.stderr)
        host = socket.gethostname()
        assert f"error: {out}/ is being written by another rowloom run (pid {first.pid} on {host}, since" in text
        assert "-o " + str(out) in text  # the holder's command
        assert "wait for it to end or stop it, or use a new --output" in text
        assert "Traceback" not in second.stderr
        # The refused run touched nothing: the first run's parts are all still there and it finishes alone.
        assert set(files_before) <= {p.name for p in (out / "data").iterdir()}
        assert first.wait(timeout=120) == 0, (tmp_path / "first.txt").read_text()
    finally:
        first.kill()
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["records_written"] == N
    table = listed_table(out)
    assert table.num_rows == N and table.column("row_id").to_pandas().is_unique
    assert not (out / LOCK).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(sim, tmp_path):
    config = _config(sim, tmp_path)
    out = tmp_path / "out"
    first = _start(config, out, tmp_path / "first.txt")
    _wait_for_rows(out, first)
    first.kill()
    first.wait(timeout=10)
    assert json.loads((out / LOCK).read_text())["pid"] == first.pid  # SIGKILL: nothing released it

    again = run_cli("run", str(_config(sim, tmp_path, 64)), "-n", str(N), "-o", str(out), "-q", timeout=120)
    assert again.returncode == 0, again.stderr
    text = squeeze(again.stderr)
    assert f"warning: took over {out}/{LOCK} of a run that ended without releasing it (pid {first.pid} on" in text
    assert "its finished row groups are kept" in text
    assert read_manifest(out)["complete"] and listed_table(out).num_rows == N
    assert not (out / LOCK).exists()


def test_ctrl_c_releases_the_lock(sim, tmp_path):
    config = _config(sim, tmp_path)
    out = tmp_path / "out"
    first = _start(config, out, tmp_path / "first.txt")
    _wait_for_rows(out, first)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=30) == 130, (tmp_path / "first.txt").read_text()
    assert not (out / LOCK).exists()
    again = run_cli("run", str(_config(sim, tmp_path, 64)), "-n", str(N), "-o", str(out), "-q", timeout=120)
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr


# ------------------------------------------------------------------ object stores: no flock, a lock object

SAMPLERS = {
    "columns": [{"name": "row_id", "type": "uuid"}, {"name": "n", "type": "uniform", "low": 0, "high": 9}],
    "run": {"row_group_size": GROUP, "seed": 9},
}


def _put_lock(object_store, prefix: str, holder: LockHolder) -> None:
    with object_store.filesystem().open_output_stream(f"{object_store.bucket}/{prefix}/{LOCK}") as fh:
        fh.write(holder.to_bytes())


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_an_object_store_lock_names_its_holder_and_says_how_to_clear_it(object_store):
    elsewhere = LockHolder(4242, "worker-7", 1_780_000_000.0, "rowloom run big.yaml -n 100000 -o s3://…", "t1")
    _put_lock(object_store, "held", elsewhere)
    with pytest.raises(OutputError) as info:
        await run_job(DatasetConfig.from_dict(SAMPLERS), 20, output=object_store.uri("held"))
    where = redact(object_store.uri("held"))
    assert str(info.value) == (
        f"{where} is being written by another rowloom run (pid 4242 on worker-7, since 2026-05-28 "
        "20:26:40 UTC (rowloom run big.yaml -n 100000 -o s3://…)); wait for it to end or stop it, or use a new "
        "--output; if no run writes there any more, delete s3://rowloom/held/rowloom.lock"
    )
    assert object_store.filesystem().get_file_info(f"{object_store.bucket}/held/manifest.json").type.name == (
        "NotFound"
    )


async def test_an_object_store_lock_of_a_process_gone_from_this_host_is_taken_over(object_store):
    stale = LockHolder(_dead_pid(), socket.gethostname(), time.time() - 60, "rowloom run cfg.yaml", "t2")
    _put_lock(object_store, "stale", stale)
    with pytest.warns(RowloomWarning, match=rf"took over s3://rowloom/stale/{LOCK} .*pid {stale.pid} on"):
        result = await run_job(DatasetConfig.from_dict(SAMPLERS), 20, output=object_store.uri("stale"))
    assert result.summary["records_written"] == 20
    files = object_store.filesystem().get_file_info(fs.FileSelector(f"{object_store.bucket}/stale"))
    assert LOCK not in {info.base_name for info in files}  # released at the end


def test_of_two_writers_locking_an_object_store_folder_at_once_exactly_one_wins(object_store):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from rowloom.engine.output_location import OutputLocation
    from rowloom.engine.output_lock import WriterLock

    def race(prefix: str) -> list[WriterLock | OutputError]:
        start = Barrier(2)

        def take() -> WriterLock | OutputError:
            location = OutputLocation(object_store.uri(prefix))
            start.wait()  # both read "no lock" within moments of each other, as two runs started together
            try:
                return WriterLock.take(location)
            except OutputError as refused:
                return refused

        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(lambda _: take(), range(2)))

    for attempt in range(3):  # ~0.6 s each: both wait SETTLE_S before reading the lock back
        outcome = race(f"race-{attempt}")
        won = [o for o in outcome if isinstance(o, WriterLock)]
        lost = [o for o in outcome if isinstance(o, OutputError)]
        assert len(won) == 1 and len(lost) == 1, outcome
        assert "is being written by another rowloom run" in str(lost[0])
        there = LockHolder.parse(won[0].location.read_bytes(LOCK))
        assert there is not None and there.token == won[0].holder.token  # the lock names the winner
        won[0].release()
