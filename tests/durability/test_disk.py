"""Disk trouble: an output folder that cannot be created or written, and a disk that fills up mid-run. The run
stops with a message naming the folder; row groups already written stay, listed in the manifest, and a rerun
resumes after them."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rowloom.config import DatasetConfig
from rowloom.engine import output_location, storage
from rowloom.engine.job import run_job
from rowloom.errors import OutputError

from .helpers import leftovers, listed_table, read_manifest, run_cli, write_yaml

N = 200
GROUP = 10
SAMPLERS = {
    "columns": [
        {"name": "row_id", "type": "uuid"},
        {"name": "n", "type": "uniform", "low": 0, "high": 100, "integer": True},
        {"name": "label", "type": "expression", "expr": "'n=' ~ n"},
    ],
    "run": {"row_group_size": GROUP, "seed": 9, "max_row_groups_in_flight": 4},
}


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_output_folder_under_a_regular_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    for output in (blocker / "out", blocker):
        result = run_cli("run", str(config), "-n", "20", "-o", str(output), "-q", timeout=60)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr + result.stdout
        assert squeeze(f"cannot create output folder {output}") in squeeze(result.stderr)
    assert blocker.read_text() == "I am a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_output_folder_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    result = run_cli("run", str(config), "-n", "20", "-o", str(out), "-q", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(out) in squeeze(result.stderr)


class DiskFills:
    """Lets `room` Parquet parts be written, then every write fails with ENOSPC (and, with `manifest=True`,
    every manifest/summary write too), like a disk that fills up mid-run."""

    def __init__(self, monkeypatch, room: int, *, manifest: bool = False, once: bool = False):
        self.room = room
        self.full = False
        self.writes = 0  # parts asked for, failed ones included
        real_parquet, real_atomic = storage.pq.write_table, output_location.atomic_write_bytes

        def write_table(*args, **kwargs):
            self.writes += 1
            if self.room <= 0 and not (once and self.full):  # `once`: space is freed right after the failure
                self.full = True
                # Half a file reaches the disk before it fills up, as it would for real.
                args[1].write(b"PAR1 partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= 1
            return real_parquet(*args, **kwargs)

        def atomic_write_bytes(path, data):
            if manifest and self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_atomic(path, data)

        monkeypatch.setattr(storage.pq, "write_table", write_table)
        monkeypatch.setattr(output_location, "atomic_write_bytes", atomic_write_bytes)


@pytest.mark.parametrize("manifest_too", [False, True], ids=["parts-only", "manifest-too"])
async def test_disk_full_stops_the_run_keeps_written_groups_and_a_rerun_resumes(tmp_path, monkeypatch, manifest_too):
    config = DatasetConfig.from_dict(SAMPLERS)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        DiskFills(patch, room=3, manifest=manifest_too)
        with pytest.raises(OutputError) as info:
            await run_job(config, N, output=out)
    message = str(info.value)
    assert str(out) in message and "No space left on device" in message
    if not manifest_too:
        assert "row groups already written stay" in message
        assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    manifest = read_manifest(out)
    assert len(manifest["row_groups"]) == 3 and manifest["complete"] is False
    assert listed_table(out).num_rows == 3 * GROUP  # every listed file is complete
    assert leftovers(out) == []  # the half-written part was removed

    resumed = await run_job(config, N, output=out)
    assert resumed.summary["records_resumed"] == 3 * GROUP
    frame = pq.read_table(out / "data").to_pandas()
    assert len(frame) == N and frame["row_id"].is_unique
    reference = (await run_job(config, N, output=tmp_path / "reference")).to_pandas()
    assert frame.equals(reference)


async def test_no_row_group_is_written_after_the_output_failed_even_when_it_would_take_it(tmp_path, monkeypatch):
    # Finished work is kept after any fatal error but the output's own: once a part failed, a row group completing
    # later is not written, even though the disk would now take it (the output is not trusted again in this run).
    out = tmp_path / "out"
    disk = DiskFills(monkeypatch, room=2, once=True)
    with pytest.raises(OutputError, match="No space left on device"):
        await run_job(DatasetConfig.from_dict(SAMPLERS), N, output=out)
    assert disk.writes == 3  # two parts, then the failed one: nothing after it
    assert len(read_manifest(out)["row_groups"]) == 2 and listed_table(out).num_rows == 2 * GROUP
    assert leftovers(out) == []


def test_cli_reports_a_full_disk_in_one_message(tmp_path, monkeypatch):
    from rowloom.interface.cli import app

    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    out = tmp_path / "out"
    DiskFills(monkeypatch, room=2)
    result = CliRunner().invoke(app, ["run", str(config), "-n", str(N), "-o", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    text = squeeze(result.output)
    assert "Traceback" not in result.output
    assert squeeze("No space left on device") in text and squeeze(f"row groups already written stay in {out}") in text
    assert len(read_manifest(out)["row_groups"]) == 2
    assert Path(out / "data" / "part-00000.parquet").is_file()
