"""A run's inputs outside its config: a seed file rewritten, a local model file swapped, a custom function edited,
a manifest of a newer format. Resuming over a changed seed or model is refused (the rows would mix two inputs),
an edited function is warned, a newer manifest is refused; the manifest records the inputs and rowloom's version."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rowloom
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine import run_inputs
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.terms import PYTHON_TERMS
from rowloom.errors import OutputError

from .helpers import read_manifest, run_cli, write_yaml
from .helpers import rowloom as rowloom_command

GROUP = 10
N = 50


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.2, models=("sim-small",))) as server:
        yield server


def squeeze(text: str) -> str:
    return " ".join(text.split())


def write_seed(path: Path, rows: int) -> None:
    pq.write_table(pa.table({"seed_id": list(range(rows)), "city": [f"city {i}" for i in range(rows)]}), path)


def seeded_config(base_url: str, seed: Path) -> dict:
    """50 records from a shuffled 60-row seed, without replacement, and one LLM column (slow enough to kill)."""
    return {
        "providers": [{"name": "sim", "base_url": base_url}],
        "models": [{"alias": "w", "provider": "sim", "model": "sim-small", "max_parallel_requests": 4}],
        "seed": {"path": str(seed), "sampling": "shuffle"},
        "columns": [{"name": "blurb", "type": "llm_text", "model": "w", "prompt": "A line about {{ city }}."}],
        "run": {"row_group_size": GROUP, "seed": 5},
    }


def _kill_after_rows(command: list[str], out: Path, rows: int, log: Path) -> None:
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        manifest = read_manifest(out)
        if manifest and sum(g["rows"] for g in manifest["row_groups"]) >= rows:
            break
        assert proc.poll() is None, log.read_text()
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=10)


def test_a_seed_rewritten_with_more_rows_refuses_the_resume_and_the_restored_one_resumes(sim, tmp_path):
    seed = tmp_path / "seed.parquet"
    write_seed(seed, 60)
    config = write_yaml(tmp_path / "cfg.yaml", seeded_config(sim.base_url, seed))
    out = tmp_path / "out"
    args = ("run", str(config), "-n", str(N), "-o", str(out), "-q")
    _kill_after_rows(rowloom_command(*args), out, 2 * GROUP, tmp_path / "first.txt")
    manifest = read_manifest(out)
    assert not manifest["complete"] and 2 <= len(manifest["row_groups"]) < N // GROUP
    recorded = manifest["inputs"]["seed"]
    assert recorded["path"] == str(seed) and recorded["rows"] == 60
    assert recorded["schema"] == ["seed_id: int64", "city: string"]
    assert manifest["rowloom_version"] == rowloom.__version__
    parts = {p.name: p.read_bytes() for p in (out / "data").iterdir()}

    write_seed(seed, 70)  # the same path, 70 rows: the shuffle would map rows onto other seed rows
    refused = run_cli(*args)
    assert refused.returncode == 1, refused.stderr
    assert (
        f"error: {out}/ holds a run of seed file {seed}, which has changed since (60 rows then, 70 now): resuming "
        "would mix rows of two seeds. Restore the file, or use a new --output"
    ) in squeeze(refused.stderr)
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == parts
    assert read_manifest(out) == manifest

    write_seed(seed, 60)  # restored: same rows, same bytes, a new mtime
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"warning: seed file {seed} was modified since {out}/ was written, but its rows" in squeeze(resumed.stderr)
    frame = pq.read_table(out / "data").to_pandas()
    assert len(frame) == N and frame["seed_id"].is_unique  # without replacement: 50 distinct seed rows


def test_a_seed_with_other_columns_is_named_in_the_refusal(tmp_path):
    seed = tmp_path / "seed.parquet"
    write_seed(seed, 30)
    data = {"seed": {"path": str(seed)}, "columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9}],
            "run": {"row_group_size": GROUP, "seed": 1}}  # fmt: skip
    config = DatasetConfig.from_dict(data)
    location = OutputLocation(tmp_path / "out")
    recorded = run_inputs.collect(config, 30)
    pq.write_table(pa.table({"seed_id": list(range(30)), "city": [1.5] * 30}), seed)
    with pytest.raises(OutputError) as info:
        run_inputs.check(recorded, run_inputs.collect(config, 30), location, PYTHON_TERMS)
    assert str(info.value) == (
        f"{tmp_path}/out/ holds a run of seed file {seed}, which has changed since (columns then: seed_id: int64, "
        "city: string; now: seed_id: int64, city: double): resuming would mix rows of two seeds. Restore the file, "
        "or use a new output="
    )


def test_a_local_providers_model_file_is_part_of_the_run(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 10_000)
    data = {
        "providers": [{"name": "llama", "type": "local", "model_path": str(model)}],
        "models": [{"alias": "m", "provider": "llama", "model": "local"}],
        "columns": [{"name": "t", "type": "llm_text", "model": "m", "prompt": "hi"}],
    }
    config = DatasetConfig.from_dict(data)
    recorded = run_inputs.collect(config)
    assert recorded["models"]["llama"]["path"] == str(model.resolve())
    location = OutputLocation(tmp_path / "out")
    os.utime(model)  # touched or copied: the same model
    run_inputs.check(recorded, run_inputs.collect(config), location)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 10_000)  # same size, other weights
    config.providers[0].model_path = str(other)
    with pytest.raises(OutputError) as info:
        run_inputs.check(recorded, run_inputs.collect(config), location)
    assert str(info.value) == (
        f"{tmp_path}/out/ holds a run of provider 'llama' serving {model.resolve()} (2560004 bytes), but it now "
        f"serves {other.resolve()} (2560004 bytes, other content): resuming would mix rows of two models. Restore "
        "the model file (model_path), or use a new --output"
    )


FUNCTION = """
def shout(row):
    return row["word"].upper(){suffix}
"""


def test_an_edited_custom_function_is_warned_when_the_run_is_extended(tmp_path):
    module = tmp_path / "mine_b1.py"
    module.write_text(FUNCTION.format(suffix=""))
    data = {
        "columns": [
            {"name": "word", "type": "category", "values": ["a", "b"]},
            {"name": "loud", "type": "custom", "function": "mine_b1:shout", "inputs": ["word"]},
        ],
        "run": {"row_group_size": GROUP, "seed": 3},
    }
    config = write_yaml(tmp_path / "cfg.yaml", data)
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(tmp_path)}
    first = run_cli("run", str(config), "-n", "20", "-o", str(out), "-q", env=env)
    assert first.returncode == 0, first.stderr
    functions = read_manifest(out)["inputs"]["functions"]
    assert functions["loud"]["function"] == "mine_b1:shout" and len(functions["loud"]["source"]) == 16

    module.write_text(FUNCTION.format(suffix=' + "!"'))
    extended = run_cli("run", str(config), "-n", "30", "-o", str(out), "-q", env=env)
    assert extended.returncode == 0, extended.stderr
    assert (
        f"warning: the source of column 'loud''s function mine_b1:shout changed since {out}/ was written; its rows "
        "written before keep the old code's values (use a new --output for rows of one version)"
    ) in squeeze(extended.stderr)
    assert read_manifest(out)["records_written"] == 30


def test_a_manifest_of_a_newer_format_is_refused_naming_the_version(tmp_path):
    data = {"columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9}], "run": {"row_group_size": GROUP}}
    config = write_yaml(tmp_path / "cfg.yaml", data)
    out = tmp_path / "out"
    assert run_cli("run", str(config), "-n", "20", "-o", str(out), "-q").returncode == 0
    manifest = read_manifest(out)
    manifest.update(format_version=99, rowloom_version="9.0.0", complete=False)
    (out / "manifest.json").write_text(json.dumps(manifest))
    refused = run_cli("run", str(config), "-n", "20", "-o", str(out), "-q")
    assert refused.returncode == 1
    assert (
        f"error: {out}/ was written by rowloom 9.0.0 (manifest format 99), which rowloom {rowloom.__version__} "
        "cannot continue; upgrade rowloom to continue it, or use a new --output"
    ) in squeeze(refused.stderr)
