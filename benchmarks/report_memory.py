"""What rendering the report of a large event log costs: peak RSS and wall time of `rowloom report` on a synthetic
log (`rowloom.bench.synthetic_log`: the real event types and sink, no request sent), beside a tiny log's.

The report streams the log (issue 19: a 1 GB log renders in bounded memory), so its peak RSS should not grow with
the log: the large and the tiny log's peaks should be close, whatever the log's size.

    python benchmarks/report_memory.py [--requests 170000] [--output benchmarks/results/report_memory.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rowloom.bench.synthetic_log import write_log

ROOT = Path(__file__).resolve().parents[1]
# `rowloom report FOLDER` in a process of its own, which prints its peak RSS (KiB on Linux) when it is done.
_CHILD = (
    "import resource, sys\n"
    "from rowloom.interface.cli import main\n"
    "sys.argv = ['rowloom', 'report', sys.argv[1]]\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def measure(folder: Path, requests: int) -> dict[str, float]:
    """Write a log of `requests` requests into `folder`, then report on it: its size and the report's cost."""
    folder.mkdir(parents=True, exist_ok=True)
    events = write_log(folder / "events.jsonl", requests)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "records_written": requests}))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True, text=True, check=True)
    return {
        "requests": requests,
        "events": events,
        "log_mb": round((folder / "events.jsonl").stat().st_size / 1e6, 1),
        "report_wall_s": round(time.monotonic() - start, 2),
        "report_peak_rss_mb": round(int(done.stdout.split()[-1]) / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=170_000, help="Requests in the large log (~6 events each)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "report_memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rowloom-report-memory-") as tmp:
        tiny = measure(Path(tmp) / "tiny", 300)
        large = measure(Path(tmp) / "large", args.requests)
    result = {"host": platform.node(), "python": platform.python_version(), "tiny": tiny, "large": large}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
