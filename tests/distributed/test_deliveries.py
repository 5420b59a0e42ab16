"""The driver's book of deliveries: every part listed under the name delivered, a dropped worker's parts never.

Real part files, written by the workers' own `PartWriter`; no Ray needed (the executor feeds the book the same way).
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from rowloom.config import DatasetConfig
from rowloom.engine.distributed.deliveries import DeliveryBook, DriverStore
from rowloom.engine.distributed.worker import Delivery, PartWriter
from rowloom.engine.plan import build_plan
from rowloom.engine.progress import RunProgress
from rowloom.observe.sinks import MemorySink

CONFIG = DatasetConfig.from_dict(
    {"columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9, "integer": True}], "run": {"row_group_size": 2}}
)
RECORDS = 6


def _writer(out, name: str) -> PartWriter:
    return PartWriter(name, out, CONFIG, build_plan(CONFIG, RECORDS), RECORDS, 1)


def _part(writer: PartWriter, index: int, rows: int):
    table = writer.table({"n": list(range(rows))}, list(range(rows)))
    return writer.write_row_group(index, table, 0)


def test_a_dropped_workers_late_part_is_neither_listed_nor_left_and_the_listed_part_stays(tmp_path):
    store = DriverStore(tmp_path, CONFIG, build_plan(CONFIG, RECORDS), RECORDS, 1)
    store.open()
    book = DeliveryBook(store, RunProgress(), MemorySink())
    zombie, heir = _writer(tmp_path, "job-w0"), _writer(tmp_path, "job-w2")
    book.take([Delivery("job-w0", _part(zombie, 0, 2))])  # delivered before it went silent: counts
    book.drop("job-w0")
    listed = _part(heir, 1, 2)
    book.take([Delivery("job-w2", listed)])
    late = _part(zombie, 1, 1)  # the dropped worker was still writing row group 1, with other rows
    book.take([Delivery("job-w0", late)])

    assert late.file != listed.file  # each writer its own name: the late part replaced nothing
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    files = {g["file"]: g["rows"] for g in manifest["row_groups"]}
    assert files == {"data/part-00000-job-w0.parquet": 2, "data/part-00001-job-w2.parquet": 2}
    assert sorted(f"data/{p.name}" for p in (tmp_path / "data").iterdir()) == sorted(files)  # late one removed
    assert all(pq.read_table(tmp_path / f).num_rows == rows for f, rows in files.items())
    assert book.discarded == [late.file] and book.progress.records_written == 4


def test_strays_of_writers_cut_off_before_delivering_are_removed_and_listed_parts_kept(tmp_path):
    store = DriverStore(tmp_path, CONFIG, build_plan(CONFIG, RECORDS), RECORDS, 1)
    store.open()
    book = DeliveryBook(store, RunProgress(), MemorySink())
    kept = _part(_writer(tmp_path, "job-w1"), 2, 2)
    book.take([Delivery("job-w1", kept)])
    stray = _part(_writer(tmp_path, "job-w0"), 2, 2)  # written, never delivered (killed in between)
    (tmp_path / "data" / "notes.txt").write_text("not ours")
    (tmp_path / "data" / ".tmp-part-00003-job-w0.parquet-1a2b3c4d").write_bytes(b"half")  # killed mid-write
    assert store.remove_strays() == ["data/.tmp-part-00003-job-w0.parquet-1a2b3c4d", stray.file]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["notes.txt", "part-00002-job-w1.parquet"]


def test_a_worker_is_silent_once_not_heard_from_for_the_limit():
    now = [0.0]
    book = DeliveryBook(None, RunProgress(), MemorySink(), clock=lambda: now[0])  # type: ignore[arg-type]
    book.take([Delivery("w0", None), Delivery("w1", None)])
    now[0] = 2.0
    book.take([Delivery("w1", None)])
    assert book.next_deadline(["w0", "w1", "w2"], 3.0) == 1.0  # w2 not heard from yet: not judged
    now[0] = 3.5
    assert book.silent(["w0", "w1", "w2"], 3.0) == ["w0"]
    book.drop("w0")
    assert book.silent(["w0", "w1"], 3.0) == [] and book.next_deadline(["w0"], 3.0) is None


def test_ray_parts_without_a_manifest_are_known_as_a_rowloom_runs(tmp_path):
    import pytest

    from rowloom.engine.output_location import OutputLocation
    from rowloom.engine.resume import decide
    from rowloom.errors import OutputError

    writer = _writer(tmp_path, "1a2b3c4d5e6f-w0")
    writer.location.make_dirs("data")
    _part(writer, 0, 2)  # a worker wrote it; the manifest that listed it is gone
    with pytest.raises(OutputError, match=r"holds 1 file of a rowloom run \(part-00000-1a2b3c4d5e6f-w0.parquet\)"):
        decide(OutputLocation(tmp_path), CONFIG, RECORDS, "auto")


async def test_a_part_the_driver_no_longer_takes_is_removed_by_its_writer(tmp_path):
    """A dropped worker that wakes after the run ended: its ledger is gone, so it cannot deliver; the part it
    wrote would stay in `data/` beside the listed ones (no driver is left to remove it)."""
    import pytest

    from rowloom.engine.distributed.worker import WorkerEngine
    from rowloom.engine.output_location import OutputLocation

    def deliver(delivery: Delivery) -> None:
        if delivery.entry is not None:
            raise ConnectionError("the ledger actor is gone")

    async def renew(label, report):  # no model column: never called
        raise AssertionError

    (tmp_path / "data").mkdir()  # the driver's, made before any worker starts
    engine = WorkerEngine("w0", "job", CONFIG, RECORDS, OutputLocation(tmp_path), 1, renew, deliver)
    await engine.start()
    try:
        with pytest.raises(ConnectionError, match="ledger actor is gone"):
            await engine.run([0])
    finally:
        await engine.close()
    assert not [p.name for p in (tmp_path / "data").iterdir()]  # neither the part nor a temp file
