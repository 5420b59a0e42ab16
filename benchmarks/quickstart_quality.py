"""What the README's quick start gives with the model it ships with: records written, rows dropped and why, how the
triage spreads over its topics, and what the judge's reasons look like — over several runs, so the README's "what
to expect from a 135M model" is a measurement, not a guess.

Runs `examples/quickstart.yaml` (the `local` provider: llama.cpp's server with SmolLM2-135M on 127.0.0.1) `--runs`
times at `--records` records each, with the reply cache off, and writes JSON and a Markdown summary.

    python benchmarks/quickstart_quality.py [--runs 3] [--records 20] [--output benchmarks/results/quickstart]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from rowloom.concurrency.loops import run as run_loop
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.models.cache import with_cache

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "quickstart.yaml"
RUBRICS = ("realistic", "triage_fits")


def one_run(records: int) -> dict:
    config = with_cache(DatasetConfig.from_yaml(CONFIG), mode="off")
    with tempfile.TemporaryDirectory(prefix="rowloom-quickstart-") as tmp:
        started = time.monotonic()
        result = run_loop(run_job(config, records, output=Path(tmp) / "out"))
        wall = time.monotonic() - started
        rows = pq.read_table(Path(tmp) / "out" / "data").to_pylist()
    summary = result.summary
    topics = Counter(row["triage"]["topic"] for row in rows)
    reasons = [row["quality"][rubric]["reason"] for row in rows for rubric in RUBRICS]
    echoes = sum(reason.strip().lower().rstrip(".") in (*RUBRICS, "yes", "no") for reason in reasons)
    fragments = sum(len(reason.split()) < 3 for reason in reasons)  # "reliable", "not enough": no reason given
    return {
        "records_written": summary["records_written"],
        "rows_dropped": summary["rows_dropped"],
        "dropped_by_reason": summary["rows_dropped_by_reason"],
        "wall_s": round(wall, 1),
        "triage_topics": dict(topics.most_common()),
        "top_topic_share": round(topics.most_common(1)[0][1] / len(rows), 3) if rows else None,
        "urgency": dict(sorted(Counter(row["triage"]["urgency"] for row in rows).items())),
        "empty_reasons": sum(not reason.strip() for reason in reasons),
        "reasons": len(reasons),
        "reasons_that_echo_a_rubric_or_yes_no": echoes,
        "reasons_under_three_words": fragments,
        "median_reason_chars": statistics.median(len(reason) for reason in reasons) if reasons else None,
        "sample": [{"ticket": row["ticket"], "triage": row["triage"], "quality": row["quality"]} for row in rows[:3]],
    }


def markdown(runs: list[dict], records: int) -> str:
    lines = [
        f"# Quick start quality: {len(runs)} runs of examples/quickstart.yaml at {records} records (SmolLM2-135M)",
        "",
        "| run | written | dropped (why) | top topic share | topics | empty reasons | echo reasons | reasons < 3 words "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(runs, 1):
        why = ", ".join(f"{k} {v}" for k, v in run["dropped_by_reason"].items()) or "-"
        topics = ", ".join(f"{k} {v}" for k, v in run["triage_topics"].items())
        lines.append(
            f"| {i} | {run['records_written']} | {run['rows_dropped']} ({why}) | {run['top_topic_share']} | "
            f"{topics} | {run['empty_reasons']}/{run['reasons']} | "
            f"{run['reasons_that_echo_a_rubric_or_yes_no']}/{run['reasons']} | "
            f"{run['reasons_under_three_words']}/{run['reasons']} | {run['wall_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "quickstart")
    args = parser.parse_args()
    runs = [one_run(args.records) for _ in range(args.runs)]
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "quality.json").write_text(json.dumps({"records": args.records, "runs": runs}, indent=1) + "\n")
    (args.output / "summary.md").write_text(markdown(runs, args.records))
    print(markdown(runs, args.records))


if __name__ == "__main__":
    main()
