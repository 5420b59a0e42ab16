"""Figures of an endpoint-pool scenario, from its event log: per member, per outage, and of the fallback tier.

Every request event names the member endpoint it went to by its key (`provider/model`); each member here is one
simulated provider, so the provider half of the key says which. Times are seconds since the job started.

Definitions (the guardrails in guardrails.yaml read these):

* **Work window** — "while work remains": from the run's first admission to the first completion after which
  fewer request attempts remain (attempts admitted over the whole run − attempts completed so far, i.e. in flight
  plus not yet admitted, retries included) than the primaries' summed capacity at that moment (a member counts 0
  while its simulator is in an outage window). What follows is the final drain, which no routing can fill.
* **Utilisation** of a member — the time-integral of min(in flight, capacity) ÷ the integral of its capacity over
  the work window: its mean in flight ÷ its capacity, with over-admission beyond the capacity not counted as use.
* **Outage window** — for each simulator outage: from 1 s after it starts to its end or the end of the work
  window, whichever comes first; the other members' mean in flight ÷ capacity is measured over it.
* **Fallback admissions off saturation** — fallback admissions at a moment some primary was neither down
  (between its `endpoint_down` and `endpoint_up`) nor at its limit (in flight ≥ its learned limit − 1).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rowloom.bench.pool_scenarios import PoolEndpoint, pool_members
from rowloom.bench.scenarios import Scenario
from rowloom.observe.timeline import CapacityFn

FALLBACK_RANGE_GAP_S = 1.0  # fallback admissions further apart than this start a new served range
OUTAGE_SETTLE_S = 1.0  # the first second of an outage is excluded: requests cut by it are still being re-routed
POOL = "pool"  # the pool's name in the ideal-span inputs


@dataclass
class _Member:
    endpoint: PoolEndpoint
    capacity: CapacityFn  # job time -> capacity, 0 inside the simulator's outage windows
    in_flight: int = 0
    steps: list[tuple[float, int]] = field(default_factory=list)  # (time, in flight from then on)
    admissions: list[float] = field(default_factory=list)
    completed: int = 0
    limit: int | None = None
    down: bool = False

    @property
    def fallback(self) -> bool:
        return self.endpoint.tier == "fallback"


def outage_windows(endpoint: PoolEndpoint, offset: float) -> list[tuple[float, float]]:
    """The simulator's outage windows as (start, end) in job time (its schedule starts `offset` before the job)."""
    return [(start - offset, start + length - offset) for start, length in endpoint.sim.outages]


def with_outages(capacity: CapacityFn, windows: list[tuple[float, float]]) -> CapacityFn:
    """`capacity`, but 0 inside the outage windows."""

    def at(t: float) -> float:
        return 0.0 if any(start <= t < end for start, end in windows) else capacity(t)

    return at


def pool_capacities(scenario: Scenario, capacities: Mapping[str, CapacityFn], offset: float) -> dict[str, CapacityFn]:
    """Each pool member's capacity over job time with its outages at 0 (empty for a scenario without a pool)."""
    return {ep.label: with_outages(capacities[ep.label], outage_windows(ep, offset)) for ep in pool_members(scenario)}


def pool_ideal_inputs(
    scenario: Scenario,
    successes: Mapping[str, int],
    latencies: Mapping[str, float],
    capacities: Mapping[str, CapacityFn],
    offset: float,
) -> tuple[dict[str, int], dict[str, float], dict[str, CapacityFn]]:
    """The ideal-span inputs with the pool's members folded into one endpoint `pool`: every member's successful
    requests at their mean service time, on the primaries' summed capacity (outages at 0). A fallback is overflow,
    not capacity the pool is meant to run on, so its slots are not in the bound (its work is)."""
    members = pool_members(scenario)
    if not members:
        return dict(successes), dict(latencies), dict(capacities)
    labels = {ep.label for ep in members}
    own = pool_capacities(scenario, capacities, offset)
    primaries = [own[ep.label] for ep in members if ep.tier == "primary"]
    done = sum(successes.get(label, 0) for label in labels)
    work = sum(successes.get(label, 0) * latencies[label] for label in labels)
    out_s = {k: v for k, v in successes.items() if k not in labels}
    out_l = {k: v for k, v in latencies.items() if k not in labels}
    out_c = {k: v for k, v in capacities.items() if k not in labels}
    out_s[POOL] = done
    out_l[POOL] = work / done if done else max(latencies[label] for label in labels)
    out_c[POOL] = lambda t: sum(cap(t) for cap in primaries)
    return out_s, out_l, out_c


def _integral(
    steps: list[tuple[float, int]], capacity: CapacityFn, start: float, end: float, breaks: Iterable[float]
) -> tuple[float, float, float]:
    """Integrals over [start, end] of min(in flight, capacity), of in flight and of capacity."""
    if end <= start:
        return 0.0, 0.0, 0.0
    times = [t for t, _ in steps]
    edges = sorted({start, end, *(t for t in times if start < t < end), *(b for b in breaks if start < b < end)})
    used = raw = cap_area = 0.0
    for a, b in itertools.pairwise(edges):
        i = bisect.bisect_right(times, a) - 1
        n = steps[i][1] if i >= 0 else 0
        cap = capacity((a + b) / 2)
        used += min(n, cap) * (b - a)
        raw += n * (b - a)
        cap_area += cap * (b - a)
    return used, raw, cap_area


def _ranges(times: list[float], gap: float) -> list[list[float]]:
    ranges: list[list[float]] = []
    for t in times:
        if ranges and t - ranges[-1][1] <= gap:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    return [[round(a, 3), round(b, 3)] for a, b in ranges]


def measure(
    scenario: Scenario,
    events: Iterable[Mapping[str, Any]],
    capacities: Mapping[str, CapacityFn],
    offset: float,
) -> dict[str, Any] | None:
    """The pool figures of a run (see the module docstring), or None for a scenario without a pool.

    `capacities` are the members' capacities over job time (without outages); `offset` is how long before the
    job the simulators' schedules started."""
    endpoints = pool_members(scenario)
    if not endpoints:
        return None
    own = pool_capacities(scenario, capacities, offset)
    members = {ep.provider: _Member(ep, own[ep.label]) for ep in endpoints}
    primaries = [m for m in members.values() if not m.fallback]
    t0: float | None = None
    completions: list[float] = []
    off_saturation: list[dict[str, Any]] = []
    fallback_admissions = 0
    for e in events:
        kind = e["kind"]
        if kind == "job_started":
            t0 = float(e["ts"])
            continue
        if t0 is None:
            continue
        m = members.get(str(e.get("key", "")).partition("/")[0])
        if m is None:
            continue
        t = float(e["ts"]) - t0
        if kind == "request_admitted":
            if m.fallback:
                fallback_admissions += 1
                busy = [p for p in primaries if not p.down and p.in_flight < (p.limit or 0) - 1]
                if busy and len(off_saturation) < 20:
                    off_saturation.append(
                        {
                            "t": round(t, 3),
                            "primaries": {p.endpoint.label: {"in_flight": p.in_flight, "limit": p.limit} for p in busy},
                            "wait_s": round(float(e.get("wait_s", 0.0)), 3),
                        }
                    )
                elif busy:
                    off_saturation.append({"t": round(t, 3)})
            m.in_flight += 1
            m.steps.append((t, m.in_flight))
            m.admissions.append(t)
            if e.get("limit") is not None:
                m.limit = int(e["limit"])
        elif kind == "request_completed":
            m.in_flight = max(0, m.in_flight - 1)
            m.steps.append((t, m.in_flight))
            m.completed += 1
            completions.append(t)
        elif kind == "limit_changed":
            m.limit = int(e["new"])
        elif kind == "endpoint_down":
            m.down = True
        elif kind == "endpoint_up":
            m.down = False

    admitted = sum(len(m.admissions) for m in members.values())
    attempts = sum(m.completed for m in members.values())
    starts = [m.admissions[0] for m in members.values() if m.admissions]
    start = min(starts) if starts else 0.0
    completions.sort()
    end = completions[-1] if completions else start
    for done, t in enumerate(completions, start=1):
        if admitted - done < sum(p.capacity(t) for p in primaries):
            end = t
            break
    windows = {m.endpoint.label: outage_windows(m.endpoint, offset) for m in members.values()}
    breaks = sorted({t for spans in windows.values() for span in spans for t in span if math.isfinite(t)})

    per_member: dict[str, Any] = {}
    for m in members.values():
        used, raw, cap_area = _integral(m.steps, m.capacity, start, end, breaks)
        per_member[m.endpoint.label] = {
            "tier": m.endpoint.tier,
            "capacity": m.endpoint.sim.capacity,
            "requests": m.completed,
            "share": round(m.completed / attempts, 4) if attempts else 0.0,
            "utilisation_work": round(used / cap_area, 4) if cap_area else None,
            "mean_in_flight_work": round(raw / (end - start), 3) if end > start else None,
            "limit_final": m.limit,
        }

    outages: list[dict[str, Any]] = []
    for label, spans in windows.items():
        for down_at, up_at in spans:
            a, b = down_at + OUTAGE_SETTLE_S, min(up_at, end)
            others: dict[str, Any] = {}
            for m in members.values():
                if m.endpoint.label == label or m.fallback:
                    continue
                used, raw, cap_area = _integral(m.steps, m.capacity, a, b, breaks)
                others[m.endpoint.label] = {
                    "in_flight_over_capacity": round(used / cap_area, 4) if cap_area else None,
                    "mean_in_flight": round(raw / (b - a), 3) if b > a else None,
                }
            outages.append(
                {
                    "endpoint": label,
                    "down": [round(down_at, 3), round(up_at, 3)],
                    "measured": [round(a, 3), round(b, 3)],
                    "endpoints": others,
                }
            )
    # The first outage's figures under a fixed path, for guardrails (`pool.outage.endpoints.NAME...`).
    result: dict[str, Any] = {
        "attempts": attempts,
        "work_window": [round(start, 3), round(end, 3)],
        "drain_s": round((completions[-1] if completions else end) - end, 3),
        "endpoints": per_member,
        "min_utilisation_work": min(
            (
                v["utilisation_work"]
                for v in per_member.values()
                if v["tier"] == "primary" and v["utilisation_work"] is not None
            ),
            default=None,
        ),
    }
    if outages:
        result["outages"] = outages
        result["outage"] = outages[0]
        values = [v["in_flight_over_capacity"] for v in outages[0]["endpoints"].values()]
        result["outage"]["min_in_flight_over_capacity"] = (
            min(values) if values and all(v is not None for v in values) else None
        )
    fallbacks = [m for m in members.values() if m.fallback]
    if fallbacks:
        served = sum(m.completed for m in fallbacks)
        times = sorted(t for m in fallbacks for t in m.admissions)
        result["fallback"] = {
            "share": round(served / attempts, 4) if attempts else 0.0,
            "admissions": fallback_admissions,
            "ranges": _ranges(times, FALLBACK_RANGE_GAP_S),
            "admissions_off_saturation": len(off_saturation),
            "off_saturation_examples": [x for x in off_saturation if "primaries" in x][:20],
        }
    return result
