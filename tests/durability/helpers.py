"""Shared pieces of the durability tests: configs pointed at a loopback provider, the CLI as a subprocess,
and checks that an output folder is consistent (every listed file complete, no duplicate row ids)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[2]


def chain_dict(base_url: str, *, row_id: bool = True, **run: Any) -> dict[str, Any]:
    """examples/chain.yaml against `base_url`, with a per-row `row_id` (uuid) first and `run` overrides."""
    data = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text()))
    data["providers"][0]["base_url"] = base_url
    data["run"].update(run)
    if row_id:
        data["columns"].insert(0, {"name": "row_id", "type": "uuid"})
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rowloom(*args: str) -> list[str]:
    """The command line of a real `rowloom` process."""
    return [sys.executable, "-m", "rowloom.interface", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `rowloom ARGS` to the end; stdout and stderr captured as text."""
    return subprocess.run(
        rowloom(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest, or None before the first one is written. It must always parse (it is replaced atomically)."""
    file = out / "manifest.json"
    if not file.is_file():
        return None
    return json.loads(file.read_text())


def listed_table(out: Path) -> pa.Table:
    """Every row group the manifest lists, in order, after checking each file is complete and readable."""
    manifest = read_manifest(out)
    tables = []
    for entry in (manifest or {}).get("row_groups", []):
        table = pq.read_table(out / entry["file"])
        assert table.num_rows == entry["rows"], f"{entry['file']} holds {table.num_rows} rows, listed {entry['rows']}"
        tables.append(table)
    return pa.concat_tables(tables) if tables else pa.table({})


def leftovers(out: Path) -> list[Path]:
    """Temp files of interrupted writes anywhere in the output folder."""
    return sorted(out.rglob(".tmp-*"))
