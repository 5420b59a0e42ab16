"""`write_result`: how a benchmark script leaves its figures — JSON, and a readable summary beside it that names
the command which measured them. Imported by the scripts in this folder (`python benchmarks/NAME.py` puts the
folder on the path)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def write_result(output: Path, result: dict, summary: Callable[[dict, str], str]) -> str:
    """Write `result` to `output` (JSON) and `summary(result, command)` beside it (`.md`), the command being this
    script's own command line; returns the summary."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    script = Path(sys.argv[0]).resolve()
    command = " ".join(["python", f"benchmarks/{script.name}", *sys.argv[1:]])
    text = summary(result, command)
    output.with_suffix(".md").write_text(text)
    return text
