"""Build the configured limit algorithm for one resource key.

Owns the mapping from `RequestAdmissionConfig` knobs to limit constructors; must not hold any state.
"""

from __future__ import annotations

from rowloom.concurrency.clock import Clock
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.admission.limits.aimd import AIMDLimit
from rowloom.models.admission.limits.base import Limit
from rowloom.models.admission.limits.composite import CompositeLimit
from rowloom.models.admission.limits.fixed import FixedLimit
from rowloom.models.admission.limits.latency import LatencyLimit


def limit_from_config(
    config: RequestAdmissionConfig, *, ceiling: int, clock: Clock, start: int | None = None, floor: int | None = None
) -> Limit:
    """The limit `config.algorithm` names, bounded by `[floor, ceiling]` (floor default `config.min_limit`),
    starting at `start` (default `config.initial_limit`; an endpoint that declares its capacity starts there)."""
    low = min(config.min_limit if floor is None else floor, ceiling)
    if config.algorithm == "fixed":
        return FixedLimit(ceiling)
    first = config.initial_limit if start is None else start
    initial = ceiling if not config.slow_start else max(low, min(first, ceiling))
    aimd = AIMDLimit(
        initial=initial,
        min_limit=low,
        max_limit=ceiling,
        increase_step=config.aimd_increase_step,
        window=config.aimd_window,
        decrease_factor=config.aimd_decrease_factor,
        slow_start=config.slow_start,
        slow_start_step=config.slow_start_step,
        probe_zone=config.aimd_probe_zone,
        probe_step=config.aimd_probe_step,
    )
    if config.algorithm == "aimd":
        return aimd
    latency = LatencyLimit(
        clock=clock,
        initial=initial if config.algorithm == "latency" else None,
        start=initial,
        min_limit=low,
        max_limit=ceiling,
        tolerance=config.latency_tolerance,
        probe_interval_s=config.latency_probe_interval_s,
    )
    if config.algorithm == "latency":
        return latency
    return CompositeLimit([aimd, latency])
