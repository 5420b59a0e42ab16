"""Column functions used by benchmark scenarios (importable by path from YAML-style configs)."""

from __future__ import annotations

import time
from typing import Any


def burn_cpu(row: dict[str, Any], seconds: float = 0.004) -> int:
    """Spin the CPU for a few milliseconds (a stand-in for a validator or a parser) and return a length."""
    end = time.thread_time() + seconds  # this thread's CPU: burns in parallel threads must not share one budget
    total = 0
    while time.thread_time() < end:
        total += 1
    return len(str(row.get("question", ""))) + (total & 0)


def burn_cpu_heavy(row: dict[str, Any]) -> int:
    """`burn_cpu` at 20 ms a row: a column whose CPU cost dwarfs the engine's own per-row work."""
    return burn_cpu(row, 0.02)
