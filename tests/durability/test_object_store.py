"""Output to a pyarrow.fs URI: a run writes its parts, manifest and summary to an S3 endpoint on 127.0.0.1 (moto's
server speaking the S3 protocol), resumes from there, and every bad target is one clear error naming --output."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from pyarrow import fs
from typer.testing import CliRunner

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.output_location import OutputLocation, redact
from rowloom.errors import ConfigError, OutputError

from .helpers import chain_dict, write_yaml

N = 60
GROUP = 10
SAMPLERS = {
    "columns": [
        {"name": "row_id", "type": "uuid"},
        {"name": "n", "type": "uniform", "low": 0, "high": 100, "integer": True},
    ],
    "run": {"row_group_size": GROUP, "seed": 9},
}


def _manifest(store, prefix: str) -> dict:
    with store.filesystem().open_input_stream(f"{store.bucket}/{prefix}/manifest.json") as fh:
        return json.loads(fh.read())


async def test_a_run_writes_to_s3_and_resumes_from_its_manifest(object_store, tmp_path):
    with SimulatorProcess(SimulatorConfig(latency_s=0.005, capacity=32, models=("sim-small",))) as sim:
        config = DatasetConfig.from_dict(chain_dict(sim.base_url, row_group_size=GROUP, seed=3))
        uri = object_store.uri("runs/chain")
        result = await run_job(config, N, output=uri)
        reference = (await run_job(config, N, output=tmp_path / "local")).to_pandas()

        assert result.output == redact(uri) and "test-secret" not in str(result.output)
        assert result.to_pandas().equals(reference)  # read back through the store's filesystem
        manifest = _manifest(object_store, "runs/chain")
        assert manifest["complete"] and [g["index"] for g in manifest["row_groups"]] == list(range(N // GROUP))
        store = object_store.filesystem()
        names = [i.base_name for i in store.get_file_info(fs.FileSelector("rowloom/runs/chain", recursive=True))]
        assert sorted(n for n in names if n.endswith(".parquet")) == [f"part-{i:05d}.parquet" for i in range(6)]
        assert "summary.json" in names and not [n for n in names if n.startswith(".tmp-")]

        # As if the run had died after two row groups: the manifest lists two, the rest is generated again.
        manifest["row_groups"], manifest["complete"] = manifest["row_groups"][:2], False
        with store.open_output_stream("rowloom/runs/chain/manifest.json") as fh:
            fh.write(json.dumps(manifest).encode())
        resumed = await run_job(config, N, output=uri)
    assert resumed.summary["records_resumed"] == 2 * GROUP
    assert resumed.summary["records_written_this_run"] == N - 2 * GROUP
    assert resumed.to_pandas().equals(reference)


async def test_a_file_uri_is_a_local_folder(tmp_path):
    result = await run_job(DatasetConfig.from_dict(SAMPLERS), N, output=f"file://{tmp_path}/out")
    assert result.output == tmp_path / "out"
    assert pq.read_table(tmp_path / "out" / "data").num_rows == N


async def test_a_missing_bucket_is_one_error_without_the_secret(object_store):
    with pytest.raises(OutputError) as info:
        await run_job(DatasetConfig.from_dict(SAMPLERS), N, output=object_store.uri("x", bucket="no-such-bucket"))
    message = str(info.value)
    assert "cannot create output folder s3://no-such-bucket/x" in message and "test-secret" not in message


async def test_an_unknown_scheme_names_the_option():
    with pytest.raises(OutputError, match=r"--output nosuch://x/y is not a usable pyarrow.fs URI"):
        await run_job(DatasetConfig.from_dict(SAMPLERS), N, output="nosuch://x/y")


async def test_export_needs_a_local_output(object_store):
    data = {**SAMPLERS, "export": {"path": "train.jsonl", "format": "jsonl"}}
    with pytest.raises(ConfigError, match=r"export: .* must then be local"):
        await run_job(DatasetConfig.from_dict(data), N, output=object_store.uri("exported"))
    assert object_store.filesystem().get_file_info("rowloom/exported").type == fs.FileType.NotFound


def test_cli_writes_to_a_uri_and_prints_it_without_credentials(object_store, tmp_path):
    from rowloom.interface.cli import app

    config = write_yaml(tmp_path / "samplers.yaml", SAMPLERS)
    result = CliRunner().invoke(app, ["run", str(config), "-n", str(N), "-o", object_store.uri("cli"), "-q"])
    assert result.exit_code == 0, result.output
    assert "s3://rowloom/cli" in result.output and "test-secret" not in result.output
    assert _manifest(object_store, "cli")["records_written"] == N


def test_a_filesystem_without_atomic_objects_writes_via_a_temp_name_and_move(tmp_path):
    subtree = fs.SubTreeFileSystem(str(tmp_path), fs.LocalFileSystem())  # neither local to us nor an object store
    location = OutputLocation.on(subtree, "out")
    location.make_dirs("data")
    location.write_bytes("data/a.bin", b"whole")
    assert (tmp_path / "out" / "data" / "a.bin").read_bytes() == b"whole"

    def fails_midway(fh) -> None:
        fh.write(b"half")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        location.write("data/b.bin", fails_midway)
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == ["a.bin"]  # no half file, no temp
    assert location.names("data") == {"data/a.bin"} and location.read_bytes("data/b.bin") is None


def test_a_part_that_fails_mid_write_leaves_no_object_on_the_store(object_store):
    location = OutputLocation(object_store.uri("failing"))
    location.make_dirs("data")
    location.write_bytes("data/a.bin", b"whole")

    def fails_midway(fh) -> None:
        fh.write(b"half" * 1000)
        raise OSError("row group could not be encoded")

    with pytest.raises(OSError, match="could not be encoded"):
        location.write("data/b.bin", fails_midway)
    # Closing an S3 output stream completes its upload even when the block raised: no half object may appear.
    assert location.names("data") == {"data/a.bin"} and location.read_bytes("data/b.bin") is None
    assert location.read_bytes("data/a.bin") == b"whole"


class _CutOffStream:
    """An object's output stream whose upload fails mid-way: half of the write reaches the store, then an error
    (as a connection reset mid-request would); closing it completes the upload with the half that was sent."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data) -> int:
        view = memoryview(data)
        self.stream.write(view[: len(view) // 2])
        raise OSError("connection reset by peer")

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _CuttingOff:
    """A store whose output streams fail mid-upload; everything else is the store's own."""

    def __init__(self, store):
        self.store = store

    def open_output_stream(self, path, *args, **kwargs):
        return _CutOffStream(self.store.open_output_stream(path, *args, **kwargs))

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_an_upload_that_fails_mid_way_publishes_no_object(object_store):
    location = OutputLocation(object_store.uri("cut-off"))
    location.make_dirs("data")
    location.write_bytes("data/a.bin", b"whole")
    location._fs = _CuttingOff(location.filesystem)

    with pytest.raises(OSError, match="connection reset"):
        location.write("data/b.bin", lambda fh: fh.write(b"part" * 1000))
    # The half that reached the store before the error was published by closing the stream: it is deleted.
    location._fs = location._fs.store
    assert location.names("data") == {"data/a.bin"} and location.read_bytes("data/b.bin") is None
