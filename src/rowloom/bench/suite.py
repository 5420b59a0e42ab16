"""The benchmark suite: run scenarios (each in its own process), check guardrails, compare two results.

`rowloom bench` is the command; figures live in `bench.json`, a readable table and an HTML report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rowloom.bench.scenarios import SCENARIOS

DEFAULT_GUARDRAILS = Path(__file__).with_name("guardrails.yaml")


@dataclass(frozen=True)
class Breach:
    """One guardrail a scenario broke."""

    scenario: str
    metric: str
    value: Any
    bound: str

    def __str__(self) -> str:
        return f"{self.scenario}: {self.metric} = {self.value} breaks {self.bound}"


def select(names: Iterable[str] | None, quick: bool) -> list[str]:
    """Scenario names to run: the given ones, else the quick set or every scenario."""
    if names:
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
        return list(names)
    return [name for name, s in SCENARIOS.items() if s.in_quick or not quick]


def run_suite(
    names: list[str],
    *,
    quick: bool,
    out_dir: Path,
    log=print,
    records: int | None = None,
    api: str = "openai",
    seed: int | None = None,
) -> dict[str, Any]:
    """Run each scenario in a fresh Python process and collect the results into one document (`records`: every
    scenario at that size instead of its own, a smoke run whose figures the guardrails do not judge; `api`: the
    wire format every simulator and provider speaks; `seed`: every simulator's seed instead of the scenario's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    started = time.time()
    for name in names:
        log(f"running {name} …")
        cmd = [sys.executable, "-m", "rowloom.bench.runner", name, "--out", str(out_dir)]
        if quick:
            cmd.append("--quick")
        if records is not None:
            cmd += ["--records", str(records)]
        if api != "openai":
            cmd += ["--api", api]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        result_file = out_dir / f"{name}.json"
        if result_file.is_file():
            results[name] = json.loads(result_file.read_text())
        else:
            results[name] = {"scenario": name, "status": f"crashed: {proc.stderr.strip()[-2000:]}"}
        log(f"  {name}: {summary_line(results[name])}")
    return {
        "quick": quick,
        **({"records": records} if records is not None else {}),
        **({"api": api} if api != "openai" else {}),
        **({"seed": seed} if seed is not None else {}),
        "started_at": started,
        "duration_s": round(time.time() - started, 1),
        "scenarios": results,
    }


def summary_line(r: dict[str, Any]) -> str:
    if r.get("status") != "completed":
        return str(r.get("status"))
    ratio = r.get("span_over_ideal")
    return (
        f"span/ideal {ratio if ratio is not None else '-'}  utilisation {r.get('utilisation')}  "
        f"429 share {r.get('share_429')}  cpu/request {r.get('client_cpu_ms_per_request')} ms  "
        f"rss {r.get('peak_rss_mb')} MB"
    )


def _lookup(result: dict[str, Any], metric: str) -> Any:
    node: Any = result
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_guardrails(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """`{scenario or "*": {metric.path: {max: x} | {min: y}}}` from YAML."""
    return yaml.safe_load(path.read_text()) or {}


def check(document: dict[str, Any], guardrails: dict[str, dict[str, dict[str, float]]]) -> list[Breach]:
    """Every guardrail breached by the results (a missing metric or a failed scenario is a breach)."""
    breaches: list[Breach] = []
    for name, result in document["scenarios"].items():
        if result.get("status") != "completed":
            breaches.append(Breach(name, "status", result.get("status"), "== completed"))
            continue
        rules = {**guardrails.get("*", {}), **guardrails.get(name, {})}
        for metric, bound in rules.items():
            value = _lookup(result, metric)
            if value is None:
                if bound.get("required", True) and metric in guardrails.get(name, {}):
                    breaches.append(Breach(name, metric, None, "a value"))
                continue
            if "max" in bound and value > bound["max"]:
                breaches.append(Breach(name, metric, value, f"<= {bound['max']}"))
            if "min" in bound and value < bound["min"]:
                breaches.append(Breach(name, metric, value, f">= {bound['min']}"))
    return breaches


TABLE_COLUMNS = [
    ("scenario", "scenario"),
    ("span/ideal", "span_over_ideal"),
    ("span/ideal obs", "span_over_ideal_observed"),
    ("wall s", "wall_s"),
    ("ideal s", "ideal_s"),
    ("util", "utilisation"),
    ("429 share", "share_429"),
    ("cpu ms/req", "client_cpu_ms_per_request"),
    ("cpu ÷ server", "client_cpu_over_server"),
    ("rss MB", "peak_rss_mb"),
    ("q-age p95", "queue_age_p95_s"),
    ("skips", "advisory_skips"),
]


def table_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, r in document["scenarios"].items():
        if r.get("status") != "completed":
            rows.append([name, str(r.get("status"))[:60]] + [""] * (len(TABLE_COLUMNS) - 2))
            continue
        rows.append([str(_lookup(r, key)) if _lookup(r, key) is not None else "-" for _, key in TABLE_COLUMNS])
    return rows


def markdown_table(document: dict[str, Any]) -> str:
    """The results as a Markdown table (written beside bench.json)."""
    header = "| " + " | ".join(h for h, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    lines = [header, rule] + ["| " + " | ".join(row) + " |" for row in table_rows(document)]
    return "\n".join(lines) + "\n"


COMPARE_METRICS = [
    "span_over_ideal",
    "span_over_ideal_observed",
    "utilisation",
    "share_429",
    "client_cpu_ms_per_request",
    "client_cpu_over_server",
    "peak_rss_mb",
    "queue_age_p95_s",
]


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """Rows of (scenario, metric, A, B, change) for the scenarios both documents hold."""
    rows = []
    for name in a["scenarios"]:
        if name not in b["scenarios"]:
            continue
        for metric in COMPARE_METRICS:
            va, vb = _lookup(a["scenarios"][name], metric), _lookup(b["scenarios"][name], metric)
            if va is None or vb is None:
                continue
            change = f"{(vb - va) / va * 100:+.1f}%" if va else "-"
            rows.append([name, metric, str(va), str(vb), change])
    return rows
