"""`OverloadRuns`: tells overload from too much concurrency apart from overload that comes at any load.

Owns one endpoint's runs of overloads since its last success and the rate at which such runs start, per kind of
overload; must not see limits, leases or time — `feedback` asks it before an overload reaches the limit or health.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rowloom.models.types import Outcome

_MEMORY = 256  # attempts: the rate's memory
_PRIOR = 128  # a kind first seen starts as if this many clean attempts came before (a running mean up to _MEMORY)
_QUIET_RATE = 0.001  # runs started per attempt at or below which every overload is news
_RUN_CHANCE = 1e-4  # above it, a run counts when background overloads make one this rarely per attempt
_MAX_RUN = 4  # never wait for a longer run: a capacity that dropped makes long runs at any background rate


@dataclass(slots=True)
class _Runs:
    """One kind of overload: its run since the last success and how often its runs start."""

    run: int = 0
    seen: int = _PRIOR  # attempts the rate stands for, up to `_MEMORY`
    rate: float = 0.0
    needed: int = 1  # the run length that counts, at the rate now
    run_needed: int = 1  # the run length that counts for the current run

    def learn(self, started: float) -> None:
        # A running mean over a prior of clean attempts, then decayed: one run early on is one in `_PRIOR`
        # attempts, not one in the thirty seen so far, and a background of 5% shows within a few attempts.
        self.seen = min(self.seen + 1, _MEMORY)
        self.rate += (started - self.rate) / self.seen
        if self.rate <= _QUIET_RATE:
            self.needed = 1
        elif self.rate >= 1.0:
            self.needed = _MAX_RUN
        else:  # the shortest run that background overloads make at most once in 1 / _RUN_CHANCE attempts
            self.needed = min(_MAX_RUN, math.ceil(math.log(_RUN_CHANCE) / math.log(self.rate)))


class OverloadRuns:
    """Whether an overload (503/529, a timeout nothing overtook) is evidence of too much concurrency.

    A provider may answer a share of requests 503/529 whatever the load: its own overload, a restarting backend,
    a rate of errors it calls overload. A cut does not stop those, and a limit that cuts for each drives itself
    to the floor: 5% of requests answered 529 at any load held the limit at 1 (`rowloom bench limits`).
    Overload from too much concurrency comes in runs instead: every request beyond the capacity is rejected,
    at once, again and again, with no success between.

    So the rate at which runs start (a run's first overload, per success or run started, over the last
    `_MEMORY` attempts) sets how long a run must be to count. While runs start at most once in 1,000 attempts,
    every overload is news and counts at once, as a limit has always read them (the first an endpoint ever sends
    is news). Each one raises the rate enough that the next few hundred attempts need a run of two: a background
    of even 1% (once in 100), counted, cut the limit about once a second at 80 requests/s and held it at 0.4-0.6
    of the capacity, every cut marking a false edge that was then probed ever more gently. Above that, an
    overload counts from the position in its run that background overloads reach at most once in 10,000 attempts
    (a 5% background needs the 4th in a row), and never later than the `_MAX_RUN`th. A long run counts once in
    the rate: the rest of it is an edge's, not the background's. Each kind (503/529, timeout) has its own runs and
    rate. A 429 is about the client's own traffic and is never asked about (`feedback`).
    """

    def __init__(self) -> None:
        self._kinds: dict[Outcome, _Runs] = {}
        self.background = 0  # overloads that did not count

    def rate(self, kind: Outcome) -> float:
        """Runs of `kind` started per attempt, recently."""
        runs = self._kinds.get(kind)
        return 0.0 if runs is None else runs.rate

    def run_needed(self, kind: Outcome) -> int:
        """How many overloads of `kind` in a row a run starting now needs to count."""
        runs = self._kinds.get(kind)
        return 1 if runs is None else runs.needed

    def on_success(self) -> None:
        for runs in self._kinds.values():
            runs.run = 0
            runs.learn(0.0)

    def counts(self, kind: Outcome) -> bool:
        """Record an overload of `kind`; whether it counts as evidence of too much concurrency. A run is judged
        by the rate from before it began: the first overload an endpoint ever sends is news."""
        runs = self._kinds.get(kind)
        if runs is None:
            runs = self._kinds[kind] = _Runs()
        runs.run += 1
        if runs.run == 1:
            runs.run_needed = runs.needed
            runs.learn(1.0)
        if runs.run >= runs.run_needed:
            return True
        self.background += 1
        return False
