"""Capacity grants: the values a worker and an endpoint's authority exchange, and the worker's side of them.

Owns the grant/sample wire format, the local `GrantLimit` that request admission reads on the hot path, and
the renewer that reports samples and renews grants in the background; must not decide grant sizes (the
authority does) nor touch leases or waiter queues beyond waking them when the usable share changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.concurrency.tasks import cancel_and_wait
from rowloom.concurrency.wakeup import Wakeup
from rowloom.models.types import Outcome

log = logging.getLogger(__name__)

FALLBACK_SHARE = 1
"""Requests a worker may keep in flight on an endpoint while it cannot reach the endpoint's authority."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished request as a worker saw it; `age_s` dates its start relative to the report that carries it."""

    age_s: float
    rtt_s: float
    in_flight: int
    dropped: bool
    epoch: int | None
    in_flight_at_start: int | None
    rate_limited: bool = False  # a 429, as opposed to a 503/529 or a timeout: only 429s are pause evidence


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's renewal for one endpoint: what it wants, what it uses, what it learned since the last one.

    `cooling_s` is how long the worker's own controller still pauses the key (a provider's Retry-After or
    spent-budget headers): the provider's budget is the whole cluster's, so the authority pauses everyone.
    `share` is the grant the worker admits under while this report travels and until the answer lands (its
    last grant, less a local cut, or the fallback share once it lapsed): the authority lends nobody that room.
    """

    worker: str
    demand: int
    in_flight: int
    samples: tuple[Sample, ...] = ()
    cooling_s: float = 0.0
    share: int | None = None  # the share it admits under as it sends this (None: the last one it was lent)


@dataclass(frozen=True, slots=True)
class Grant:
    """Capacity an authority lends one worker until `ttl_s` from now; `epoch` is the limit's last cut stamp."""

    share: int
    ttl_s: float
    epoch: int
    limit: int
    cooling_s: float = 0.0


class GrantLimit:
    """A `Limit` whose value is the worker's current grant: request admission reads it with no round trip.

    Samples are recorded here for the renewer to ship; the one adaptive limit lives in the authority. An
    overload answered locally cannot wait a renewal for the authority's cut, so it shrinks this worker's share
    at once (to what is still in service, and by at least a quarter) — once per burst: overloads of requests
    started before that local cut change nothing more. Shrinking only ever lowers the sum of grants.
    Past its lease the grant is no longer trusted and the limit falls back to `FALLBACK_SHARE`.
    """

    def __init__(self, *, ceiling: int, clock: Clock = SYSTEM_CLOCK, fallback: int = FALLBACK_SHARE):
        self._ceiling = ceiling
        self._clock = clock
        self._fallback = min(fallback, ceiling)
        self._share = 0  # nothing until the first grant: an unrenewed worker must not add load
        self._expires_at = float("inf")  # an initial zero share needs no expiry
        self._epoch = 0
        self._samples: list[tuple[float, float, int, bool, int | None, int | None, bool]] = []
        self._cut_at = float("-inf")  # when an overload last shrank the share locally
        self._reason = "waiting for a grant"

    @property
    def limit(self) -> int:
        # Lapsed at its expiry, not after it: the renewer's lapse timer fires then and must see the fallback.
        if self._clock.now() >= self._expires_at:
            return self._fallback
        return self._share

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def min_limit(self) -> int:
        return 0

    @property
    def max_limit(self) -> int:
        return self._ceiling

    @property
    def reason(self) -> str:
        return "grant lapsed: the safe share until the authority answers" if self.expired else self._reason

    @property
    def expired(self) -> bool:
        """Whether the grant's lease ran out (the worker lost contact with the authority)."""
        return self._clock.now() >= self._expires_at

    @property
    def expires_at(self) -> float:
        """When the current grant's lease runs out (infinity before the first grant)."""
        return self._expires_at

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
        rate_limited = cause is Outcome.RATE_LIMITED
        self._samples.append((start, rtt, in_flight, dropped, epoch, in_flight_at_start, rate_limited))
        if dropped and start >= self._cut_at and self._share > 0:
            self._share = max(0, min(in_flight - 1, (self._share * 3) // 4))
            self._cut_at = self._clock.now()
            self._reason = "overload: share cut until the authority answers"

    def take_samples(self) -> tuple[Sample, ...]:
        """The samples since the last call, dated relative to now (clocks differ between processes)."""
        now = self._clock.now()
        samples, self._samples = self._samples, []
        return tuple(Sample(now - s, rtt, n, d, e, n0, r) for s, rtt, n, d, e, n0, r in samples)

    def apply(self, grant: Grant, *, asked_at: float | None = None) -> None:
        """Adopt a renewed grant. Its lease runs from `asked_at`, when the report it answers was sent (default:
        now): the authority starts the lease when that report arrives, so a lease timed from the answer's
        landing would outlive the authority's by the round trip, and a grant the authority already reclaimed
        and lent to others could still be admitted under."""
        self._share = min(grant.share, self._ceiling)
        self._expires_at = (self._clock.now() if asked_at is None else asked_at) + grant.ttl_s
        self._epoch = grant.epoch
        self._reason = "cooling down" if grant.cooling_s > 0 else f"grant of {self._share} of {grant.limit}"

    def restart(self, value: int) -> None:
        return None  # the authority's limit owns recovery; this worker keeps its grant until the next renewal


Renew = Callable[[str, Report], Awaitable[Grant]]
"""`renew(endpoint_label, report)`: one round trip to that endpoint's authority."""


@dataclass
class GrantRenewer:
    """Per worker: every `interval_s`, report each endpoint's samples and demand and adopt the new grant.

    `demand(label)`, `in_flight(label)` and `cooling_s(label)` read the local request admission;
    `changed(label, old, new)` is called whenever the usable share moved since it was last called: a renewal, a
    local overload cut (seen at the next renewal) and a lapse (at the grant's expiry) — to wake queued requests
    and to record the change. A failed or slow renewal keeps the old grant until its lease runs out, after
    which `GrantLimit` falls back to the safe share; a timer per endpoint reports that lapse when it happens,
    since a worker whose share was 0 has nothing in flight whose release would wake its queue.
    """

    worker: str
    limits: dict[str, GrantLimit]
    renew: Renew
    demand: Callable[[str], int]
    in_flight: Callable[[str], int]
    changed: Callable[[str, int, int], None]
    cooling_s: Callable[[str], float] = lambda label: 0.0
    interval_s: float = 0.1
    timeout_s: float = 1.0
    clock: Clock = SYSTEM_CLOCK
    failures: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _reported: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # share last told `changed`
    _lapses: dict[str, Wakeup] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._reported = {label: limit.limit for label, limit in self.limits.items()}

    async def renew_once(self) -> None:
        """One report and renewal per endpoint (concurrently)."""
        await asyncio.gather(*(self._renew(label) for label in self.limits))

    async def _renew(self, label: str) -> None:
        limit = self.limits[label]
        samples = limit.take_samples()
        demand, in_flight, cooling_s = self.demand(label), self.in_flight(label), self.cooling_s(label)
        report = Report(self.worker, demand, in_flight, samples, cooling_s, share=limit.limit)
        asked_at = self.clock.now()
        try:
            grant = await asyncio.wait_for(self.renew(label, report), self.timeout_s)
        except Exception as exc:  # an unreachable authority: keep the grant until its lease ends, then fall back
            self.failures += 1
            log.warning("renewing the grant of %s failed (%s: %s)", label, type(exc).__name__, exc)
            self._report(label)  # it may have lapsed meanwhile
            return
        self._report(label)  # what moved since the last report (a local cut) is a change of its own
        limit.apply(grant, asked_at=asked_at)
        self._report(label)
        # If no renewal comes first, the grant lapses at its expiry; the pending timer follows a later expiry.
        lapse = self._lapses.setdefault(label, Wakeup(self.clock))
        lapse.arm(lambda: limit.expires_at, lambda: self._report(label))

    def _report(self, label: str) -> None:
        """Tell `changed` if the usable share differs from what it was last told."""
        new, old = self.limits[label].limit, self._reported.get(label, 0)
        if new != old:
            self._reported[label] = new
            self.changed(label, old, new)

    async def _loop(self) -> None:
        while True:
            await self.renew_once()
            await self.clock.sleep(self.interval_s)

    def start(self) -> None:
        """Run the renewal loop in the background until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop renewing, then return every grant with a final report of zero demand (keeping its samples)."""
        for lapse in self._lapses.values():
            lapse.cancel()
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

        async def give_back(label: str) -> None:
            report = Report(self.worker, 0, 0, self.limits[label].take_samples())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.renew(label, report), self.timeout_s)

        await asyncio.gather(*(give_back(label) for label in self.limits))
