"""The adaptive row-group frontier: how many row groups are admitted at once, and why not more.

Widens while model capacity sits idle with no ready work for it; narrows under sustained request pressure
or when admitted rows pass the memory bound. Never exceeds the hard cap. Pure decisions over a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from rowloom.concurrency.clock import Clock
from rowloom.config.run import RunConfig


def hard_cap(run: RunConfig, *, batched: bool) -> int:
    """The most row groups admitted at once: `max_row_groups_in_flight`, except in a run with a batch column that
    leaves it unset. A batch is only as big as the rows waiting for it, and they wait minutes to hours: such a run
    lets in as many row groups as the memory bound holds, not the few an online endpoint keeps busy."""
    cap = run.max_row_groups_in_flight
    if batched and "max_row_groups_in_flight" not in run.model_fields_set:
        cap = max(cap, -(-run.max_admitted_rows // run.row_group_size))
    return cap


@dataclass(frozen=True, slots=True)
class FrontierSignals:
    """What the scheduler observed at one decision point."""

    starved: bool  # some model pool has free slots and no ready work
    paused: bool  # some endpoint is cooling down or down: more admitted rows would only wait
    queued_demand: int  # ready tasks waiting for model pools
    model_slots: int  # total model-wait slots
    admitted_rows: int


class Frontier:
    """Target width of the row-group frontier with hysteresis on narrowing."""

    def __init__(
        self,
        *,
        initial: int,
        hard_cap: int,
        max_admitted_rows: int,
        clock: Clock,
        pressure_window_s: float = 2.0,
    ):
        self.hard_cap = max(1, hard_cap)
        self.target = max(1, min(initial, self.hard_cap))
        self.max_admitted_rows = max_admitted_rows
        self.clock = clock
        self.pressure_window_s = pressure_window_s
        self._paused_since: float | None = None
        self.limited_by = "initial"

    def update(self, s: FrontierSignals) -> tuple[int, int, str] | None:
        """Apply one observation; return (old, new, reason) when the target moved."""
        now = self.clock.now()
        old = self.target
        if s.paused and s.queued_demand > 0:
            self._paused_since = self._paused_since if self._paused_since is not None else now
        else:
            self._paused_since = None
        if s.admitted_rows > self.max_admitted_rows and self.target > 1:
            self.target -= 1
            self.limited_by = "memory_bound"
            return old, self.target, "admitted rows above max_admitted_rows"
        if self._paused_since is not None and now - self._paused_since >= self.pressure_window_s:
            self._paused_since = now  # one step per window of sustained pressure
            if self.target > 1:
                self.target -= 1
                self.limited_by = "request_pressure"
                return old, self.target, "sustained request pressure"
        if s.starved and s.queued_demand < max(1, s.model_slots // 2) and not s.paused:
            if self.target >= self.hard_cap:
                self.limited_by = "hard_cap"
                return None
            self.target += 1
            self.limited_by = "widening"
            return old, self.target, "model capacity idle with little queued demand"
        return None

    def may_admit(self, in_flight: int, admitted_rows: int, next_rows: int) -> tuple[bool, str]:
        """Whether one more row group may enter now, and the limiting reason when not."""
        if in_flight == 0:
            return True, ""
        if in_flight >= self.target:
            return False, "hard_cap" if self.target >= self.hard_cap else "frontier_target"
        if admitted_rows + next_rows > self.max_admitted_rows:
            return False, "memory_bound"
        return True, ""
