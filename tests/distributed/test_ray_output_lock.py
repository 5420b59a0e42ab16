"""The Ray driver keeps the local run's output rules: it holds the folder's writer lock, records the seed file it
read in the manifest, and refuses to extend a run whose seed file changed — both refusals before Ray starts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray", reason="the Ray executor needs the optional extra: pip install 'rowloom[ray]'")

from rowloom.config import DatasetConfig
from rowloom.engine.distributed.ray_executor import run_distributed
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.output_lock import LOCK, WriterLock
from rowloom.errors import OutputError

# Every test that starts Ray runs in one xdist worker (`--dist loadgroup`): one instance at a time on the machine.
pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("ray")]


def _seeded(seed) -> DatasetConfig:
    return DatasetConfig.from_dict(
        {
            "seed": {"path": str(seed), "sampling": "shuffle"},
            "columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9, "integer": True}],
            "run": {"row_group_size": 10, "seed": 2},
        }
    )


def test_a_ray_run_on_a_folder_another_run_writes_is_refused(tmp_path):
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"city": [f"c{i}" for i in range(30)]}), seed)
    held = pytest.raises(OutputError, match=r"out/ is being written by another rowloom run \(pid \d+ on ")
    with WriterLock.take(OutputLocation(tmp_path / "out")), held:
        run_distributed(_seeded(seed), 20, output=tmp_path / "out", workers=1)


def test_a_ray_run_records_its_seed_and_refuses_a_changed_one(ray_instance, tmp_path):
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"city": [f"c{i}" for i in range(30)]}), seed)
    out = tmp_path / "out"
    result = run_distributed(_seeded(seed), 20, output=out, workers=1)
    assert result.summary["records_written"] == 20
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["seed"]["rows"] == 30 and not (out / LOCK).exists()

    pq.write_table(pa.table({"city": [f"c{i}" for i in range(40)]}), seed)
    with pytest.raises(
        OutputError, match=r"seed file .*seed.parquet, which has changed since \(30 rows then, 40 now\)"
    ):
        run_distributed(_seeded(seed), 30, output=out, workers=1)
    assert json.loads((out / "manifest.json").read_text()) == manifest
