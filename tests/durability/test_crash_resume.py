"""SIGKILL a real `rowloom run` at random moments, again and again on the same output folder, then let it finish:
exactly N rows, no duplicates, no gaps, values identical to an uninterrupted run, no temp files left."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.sim_replies import chat_reply
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

from .helpers import chain_dict, leftovers, listed_table, read_manifest, rowloom, run_cli, write_yaml

N = 1500
ROW_GROUP = 10
SEED = 7
KILLS = 10
SAMPLERS = ["row_id", "topic", "difficulty"]


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.005, capacity=64, models=("sim-small",))) as server:
        yield server


def _rows_listed(out: Path) -> int:
    manifest = read_manifest(out)
    return sum(g["rows"] for g in manifest["row_groups"]) if manifest else 0


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int, timeout_s: float = 30.0) -> None:
    """Return as soon as the manifest lists at least `rows` rows (or the process ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if _rows_listed(out) >= rows:  # a ValueError here would mean a half-written manifest: never expected
            return
        time.sleep(0.002)


def _kill_moment(rng: random.Random, out: Path, proc: subprocess.Popen) -> str:
    """Wait for a random moment to kill at; the kind of moment is returned for the record.

    Two of the three kinds wait for progress rather than time, so a faster machine does not make the run finish
    before the last kill.
    """
    listed = _rows_listed(out)
    kind = rng.choice(["start-up", "checkpoint", "mid-run"])
    if kind == "start-up":  # 0.1-0.9 s in: imports, resume, first requests, maybe the first writes
        time.sleep(rng.uniform(0.1, 0.9))
    elif kind == "checkpoint":  # right after a part and the manifest were written: the next writes are under way
        _wait_for_rows(out, proc, listed + 1)
        time.sleep(rng.uniform(0.0, 0.03))
    else:  # 1-15 row groups further, then 0-50 ms more
        _wait_for_rows(out, proc, listed + ROW_GROUP * rng.randint(1, 15))
        time.sleep(rng.uniform(0.0, 0.05))
    return kind


def _uninterrupted_samplers(config: dict, tmp_path: Path):
    """The sampler columns of an uninterrupted run with the same seed and row groups (no LLM columns needed:
    draws depend only on the seed, the column and the row group)."""
    only = {**config, "columns": [c for c in config["columns"] if c["name"] in SAMPLERS]}
    only = {k: v for k, v in only.items() if k not in ("providers", "models")}
    result = asyncio.run(run_job(DatasetConfig.from_dict(only), N, output=tmp_path / "reference"))
    return result.to_pandas()


def test_sigkill_at_random_moments_then_resume_gives_exactly_the_uninterrupted_rows(sim, tmp_path):
    data = chain_dict(sim.base_url, row_group_size=ROW_GROUP, seed=SEED)
    config = write_yaml(tmp_path / "chain.yaml", data)
    out = tmp_path / "out"
    command = rowloom("run", str(config), "-n", str(N), "-o", str(out), "--quiet")
    rng = random.Random(20261129)
    progress: list[int] = []
    moments: list[str] = []
    temp_files_seen = 0
    for kill in range(KILLS):
        stderr = tmp_path / f"stderr-{kill}.txt"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ})
        moments.append(_kill_moment(rng, out, proc))
        assert proc.poll() is None, f"run {kill} ended before the kill: {stderr.read_text()}"
        proc.kill()
        proc.wait(timeout=10)
        # After every crash: the manifest parses and every file it lists is complete, with no row twice.
        table = listed_table(out)
        if table.num_rows:
            assert table.column("row_id").to_pandas().is_unique
        temp_files_seen += len(leftovers(out))
        progress.append(table.num_rows)
    assert progress[-1] > 0, f"no row group was ever written before a kill: {progress}"
    assert progress[-1] < N

    final = run_cli("run", str(config), "-n", str(N), "-o", str(out), "--quiet")
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr

    manifest = read_manifest(out)
    assert manifest["complete"] is True
    assert [g["index"] for g in manifest["row_groups"]] == list(range(N // ROW_GROUP))  # no gaps
    on_disk = sorted(p.name for p in (out / "data").glob("*.parquet"))
    assert on_disk == sorted(Path(g["file"]).name for g in manifest["row_groups"])  # nothing unlisted
    assert leftovers(out) == []
    frame = listed_table(out).to_pandas()
    assert len(frame) == N
    assert frame["row_id"].is_unique
    assert frame.notna().all().all()
    assert pq.read_table(out / "data").num_rows == N

    # Sampled values are those of an uninterrupted run with the same seed, row for row.
    reference = _uninterrupted_samplers(data, tmp_path)
    assert frame[SAMPLERS].equals(reference[SAMPLERS])
    # LLM cells belong to their own row: the simulator's reply is a pure function of the prompt.
    for _, row in frame.sample(50, random_state=1).iterrows():
        prompt = f"Write one question about {row['topic']} at difficulty {row['difficulty']}/5."
        body = {"model": "sim-small", "messages": [{"role": "user", "content": prompt}], "max_tokens": 128}
        assert row["question"] == chat_reply(body, 60).content
    print(f"kills at {moments}; rows listed after each: {progress}; temp files left by kills: {temp_files_seen}")
