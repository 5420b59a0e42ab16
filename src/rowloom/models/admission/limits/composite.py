"""`CompositeLimit`: the minimum of several limits, each fed every sample.

Owns nothing but the list of parts; must not second-guess their algorithms.
"""

from __future__ import annotations

from collections.abc import Sequence

from rowloom.models.admission.limits.base import Limit
from rowloom.models.types import Outcome


class CompositeLimit:
    """Allows the smallest of its parts' limits (e.g. loss-based AIMD and latency-based gradient).

    Its epoch is the newest cut of any part; because epochs come from one process-wide counter, each part
    can still tell whether a sample was admitted before its own last cut.
    """

    def __init__(self, limits: Sequence[Limit]):
        if not limits:
            raise ValueError("a composite limit needs at least one part")
        self.parts: tuple[Limit, ...] = tuple(limits)
        self._first, self._rest = self.parts[0], self.parts[1:]
        # The parts' bounds never change: computed once (`limit` is read on every admission decision).
        self._min = max(part.min_limit for part in self.parts)
        self._max = min(part.max_limit for part in self.parts)

    @property
    def limit(self) -> int:
        value = self._first.limit  # read on every admission decision: no list built per read
        for part in self._rest:
            value = min(value, part.limit)
        return max(self._min, value)

    @property
    def epoch(self) -> int:
        return max(part.epoch for part in self.parts)

    @property
    def min_limit(self) -> int:
        return self._min

    @property
    def max_limit(self) -> int:
        return self._max

    @property
    def reason(self) -> str:
        binding = min(self.parts, key=lambda part: part.limit)
        return f"{type(binding).__name__}: {binding.reason}"

    def on_sample(
        self,
        start: float,
        rtt: float,
        in_flight: int,
        dropped: bool,
        *,
        epoch: int | None = None,
        in_flight_at_start: int | None = None,
        cause: Outcome | None = None,
        tokens: int | None = None,
        load: float | None = None,
    ) -> None:
        for part in self.parts:
            part.on_sample(
                start,
                rtt,
                in_flight,
                dropped,
                epoch=epoch,
                in_flight_at_start=in_flight_at_start,
                cause=cause,
                tokens=tokens,
                load=load,
            )

    def restart(self, value: int) -> None:
        for part in self.parts:
            part.restart(value)
