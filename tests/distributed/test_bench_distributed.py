"""`rowloom bench distributed` end to end at a tiny size: both measurements run and their summary is written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("ray", reason="the Ray executor needs the optional extra: pip install 'rowloom[ray]'")

# Every test that starts Ray runs in one xdist worker (`--dist loadgroup`): one instance at a time on the machine.
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("ray")]


def test_bench_distributed_writes_json_and_summary(tmp_path):
    command = [sys.executable, "-m", "rowloom.interface", "bench", "distributed", "--out", str(tmp_path)]
    sizes = ["--records", "20", "--records-cpu", "20", "--repeats", "1"]
    result = subprocess.run([*command, *sizes], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads((tmp_path / "distributed.json").read_text())
    for section in (document["shared_endpoint"]["20_records"], document["cpu_heavy"]):
        for run in ("single_process", "ray_2_workers"):
            assert section[run]["runs"]  # one measured run each
    assert document["shared_endpoint"]["20_records"]["ray_2_workers"]["median"]["peak_in_flight"] <= 16 + 4
    assert document["cpu_heavy"]["speedup_work_span"] > 0
    assert "Speed-up:" in (tmp_path / "distributed.md").read_text()
