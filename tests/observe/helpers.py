"""Shared builders for observability tests: the chain example pointed at a simulator on 127.0.0.1, and real runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from rowloom.config import DatasetConfig
from rowloom.engine.job import JobResult, run_job
from rowloom.observe.sinks import EventSink, JsonlSink

ROOT = Path(__file__).resolve().parents[2]


def chain_dict(base_url: str, *, api_key_env: str | None = None, **run: Any) -> dict[str, Any]:
    """examples/chain.yaml with its provider pointed at `base_url` (and, optionally, its key variable renamed)."""
    data = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text()))
    data["providers"][0]["base_url"] = base_url
    if api_key_env is not None:
        data["providers"][0]["api_key_env"] = api_key_env
    data["run"].update(run)
    return data


def chain_config(base_url: str, **run: Any) -> DatasetConfig:
    return DatasetConfig.from_dict(chain_dict(base_url, **run))


async def run_with_events(base_url: str, out: Path, n: int = 200, *, sink: EventSink | None = None) -> JobResult:
    """A real chain run writing its events to `out/events.jsonl` (and to `sink`, when given)."""
    from rowloom.observe.sinks import FanoutSink

    jsonl = JsonlSink(out / "events.jsonl")
    return await run_job(chain_config(base_url), n, output=out, sink=FanoutSink([jsonl, *([sink] if sink else [])]))
