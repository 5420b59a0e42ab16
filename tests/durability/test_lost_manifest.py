"""A folder whose manifest.json is gone: on a move-based filesystem (Arrow's HDFS deletes the destination and
renames again on failure) a crash can leave only `.tmp-manifest.json-*`. The run continues from it instead of
deleting it; a temp manifest cut mid-write, or parts with no manifest at all, are refused and left as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyarrow import fs
from typer.testing import CliRunner

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.output_location import OutputLocation
from rowloom.errors import RowloomWarning
from rowloom.interface.cli import app

from .helpers import write_yaml

GROUP = 10
TEMP = ".tmp-manifest.json-1a2b3c4d"
SAMPLERS = {
    "columns": [
        {"name": "row_id", "type": "uuid"},
        {"name": "n", "type": "uniform", "low": 0, "high": 100, "integer": True},
    ],
    "run": {"row_group_size": GROUP, "seed": 9},
}


def run(config: Path, n: int, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", str(config), "-n", str(n), "-o", str(out), "-q"])
    return result.exit_code, " ".join(result.output.split())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def unfinished_without_manifest(config: Path, out: Path, keep: int) -> dict:
    """A run of 30 that stopped after `keep` row groups, whose manifest.json exists only as a temp manifest."""
    assert run(config, 30, out)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["row_groups"][keep:]:
        (out / entry["file"]).unlink()
    manifest["row_groups"], manifest["complete"] = manifest["row_groups"][:keep], False
    (out / TEMP).write_text(json.dumps(manifest))
    (out / "manifest.json").unlink()
    return manifest


def test_a_run_whose_manifest_is_only_a_temp_file_continues_from_it(tmp_path):
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    out = tmp_path / "out"
    unfinished_without_manifest(config, out, keep=2)
    kept = (out / "data" / "part-00000.parquet").read_bytes()
    code, text = run(config, 30, out)
    assert code == 0, text
    assert (
        f"warning: {out}/manifest.json was missing (a move interrupted on a filesystem that has no rename, such as "
        f"HDFS); continuing from {TEMP}, the last manifest written"
    ) in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records_resumed"] == 20 and summary["records_written"] == 30
    assert (out / "data" / "part-00000.parquet").read_bytes() == kept  # not generated again
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    assert not list(out.glob(".tmp-*"))


def test_a_complete_run_gets_its_manifest_back_and_nothing_else_changes(tmp_path):
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    (out / "manifest.json").rename(out / TEMP)
    code, text = run(config, 20, out)
    assert code == 0, text
    assert f"continuing from {TEMP}" in text
    assert f"{out}/ already holds a complete run of this config: 20 of 20 records — nothing to do" in text
    assert snapshot(out) == before  # manifest.json is back, byte for byte; the temp is gone


def test_a_temp_manifest_cut_mid_write_beside_parts_is_refused(tmp_path):
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    out = tmp_path / "out"
    unfinished_without_manifest(config, out, keep=2)
    (out / TEMP).write_text((out / TEMP).read_text()[:40])  # cut mid-write
    before = snapshot(out)
    code, text = run(config, 30, out)
    assert code == 1
    assert (
        f"error: {out}/ has no manifest.json, only {TEMP}: an unfinished write of it that cannot be read; "
        f"{out}/data/ holds 2 files of a rowloom run (part-00000.parquet, part-00001.parquet) and which run and "
        f"config they belong to is unknown, so nothing was changed: use a new --output, or move {out}/data/ away to "
        "start a new run there"
    ) in text
    assert snapshot(out) == before


def test_parts_without_any_manifest_are_refused(tmp_path):
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    out = tmp_path / "out"
    unfinished_without_manifest(config, out, keep=2)
    (out / TEMP).unlink()
    before = snapshot(out)
    code, text = run(config, 30, out)
    assert code == 1
    assert (
        f"error: {out}/ has no manifest.json (lost in an interrupted write?); {out}/data/ holds 2 files of a "
        "rowloom run (part-00000.parquet, part-00001.parquet) and which run"
    ) in text
    assert snapshot(out) == before


async def test_a_move_based_filesystem_continues_from_its_temp_manifest(tmp_path):
    """A `pyarrow.fs` filesystem that is neither local to rowloom nor an object store writes via temp + move."""
    config = DatasetConfig.from_dict(SAMPLERS)
    moved = fs.SubTreeFileSystem(str(tmp_path), fs.LocalFileSystem())
    first = await run_job(config, 30, output=OutputLocation.on(moved, "out"))
    moved.move("out/manifest.json", f"out/{TEMP}")  # what a crash inside HDFS's move leaves
    with pytest.warns(RowloomWarning, match=f"continuing from {TEMP}"):
        extended = await run_job(config, 40, output=OutputLocation.on(moved, "out"))
    assert extended.summary["records_resumed"] == 30
    assert pq.read_table(tmp_path / "out" / "data").num_rows == 40
    assert first.to_pandas().equals(extended.to_pandas().iloc[:30].reset_index(drop=True))
