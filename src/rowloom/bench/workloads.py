"""Column functions used by benchmark scenarios (importable by path from YAML-style configs)."""

from __future__ import annotations

import time
from typing import Any


def burn_cpu(row: dict[str, Any], seconds: float = 0.004) -> int:
    """Spin the CPU for a few milliseconds (a stand-in for a validator or a parser) and return a length."""
    end = time.process_time() + seconds
    total = 0
    while time.process_time() < end:
        total += 1
    return len(str(row.get("question", ""))) + (total & 0)
