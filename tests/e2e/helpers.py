"""Shared builders for end-to-end tests: configs pointed at a simulator on 127.0.0.1."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from rowloom.config import DatasetConfig

ROOT = Path(__file__).resolve().parents[2]


def chain_dict(base_url: str, **run: Any) -> dict[str, Any]:
    """examples/chain.yaml with its provider pointed at `base_url` and run settings overridden."""
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data = copy.deepcopy(data)
    data["providers"][0]["base_url"] = base_url
    data["run"].update(run)
    return data


def chain_config(base_url: str, **run: Any) -> DatasetConfig:
    return DatasetConfig.from_dict(chain_dict(base_url, **run))
