"""`CapacityAuthority`: the one adaptive limit and cooldown of an endpoint, lent to workers as capacity grants.

Owns the limit (built by `limit_from_config`, never a second algorithm), the cooldown evidence and the table of
grants; plain Python with an injected clock, so it is tested without Ray (the Ray actor only wraps it). Must not
know about row groups, leases or HTTP.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.engine.distributed.grants import Grant, Report, Sample
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.limits import Limit
from rowloom.models.types import Outcome, RateLimitInfo

_NO_HEADERS = RateLimitInfo()


@dataclass(slots=True)
class _Holder:
    share: int
    demand: int
    in_flight: int
    expires_at: float
    reported_at: float = float("-inf")
    honoured: int = 0  # the share it admitted under when it last reported: in force until this answer lands

    @property
    def using(self) -> int:
        """Capacity this holder occupies: its share, or more while requests admitted before a cut still run."""
        return max(self.share, self.in_flight)

    @property
    def reserved(self) -> int:
        """Room nobody else may be lent: what it occupies, or the grant it still admits under until the answer
        to its last report lands (a shrink binds only once applied; the worker reports again after that)."""
        return max(self.using, self.honoured)


def fair_shares(limit: int, demands: dict[str, int]) -> dict[str, int]:
    """Max-min fair split of `limit` by demand (water filling): nobody gets more than it asks, leftovers go on.

    Integer shares summing to at most `limit`; ties are broken by name so every caller computes the same split.
    """
    shares = dict.fromkeys(demands, 0)
    left = limit
    wanting = sorted((d, w) for w, d in demands.items() if d > 0)
    while wanting and left > 0:
        each = left // len(wanting)
        if each == 0:  # fewer units than claimants: one each, in name order
            for _, worker in sorted(wanting, key=lambda t: t[1])[:left]:
                shares[worker] += 1
            break
        rest = []
        for demand, worker in wanting:
            give = min(each, demand - shares[worker])
            shares[worker] += give
            left -= give
            if shares[worker] < demand:
                rest.append((demand, worker))
        wanting = rest
    return shares


class CapacityAuthority:
    """Lends an endpoint's current limit to workers as grants; every worker's samples feed the one limit.

    Invariant: a grant is only issued when what every live holder occupies (its grant, or its requests in
    flight when a cut left it above its grant), this one included, sums to at most the current limit. A cut
    cannot revoke what was lent, so right after one the sum may exceed the new limit until each holder renews
    (one renewal interval); every renewal then shrinks to the new fair share, and nobody is lent room that
    another holder's requests still fill. A shrink is not revoked either: the holder admits under its old
    grant until the answer lands, so the room it gives up is lent to others only after its next report (made
    once it applied the shrink). A holder that stops renewing is dropped when its lease ends.

    Samples reach the limit in the order they finished, across workers: each report carries what its worker
    saw since its last one, so a sample is held until every live holder has reported past its finish (at most
    one renewal interval). The one limit then judges an overload against the successes of *all* workers in the
    round trip before it, as a single process would — not just those of the worker that happened to report.
    """

    def __init__(
        self,
        label: str,
        limit: Limit,
        *,
        cooldown: Cooldown | None = None,
        lease_ttl_s: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.label = label
        self.limit = limit
        self.cooldown = cooldown
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._holders: dict[str, _Holder] = {}
        self._pending: list[tuple[float, int, str, float, Sample]] = []  # (finish, seq, worker, start, sample)
        self._arrivals = itertools.count()
        self.samples = 0
        self.dropped = 0
        self.peak_granted = 0

    def renew(self, report: Report) -> Grant:
        """Learn from a worker's samples, then lend it its fair share of what the others do not hold."""
        now = self._clock.now()
        self._reclaim(now)
        for sample in report.samples:
            start = now - sample.age_s
            finish = min(start + sample.rtt_s, now)  # it finished before its report was sent
            entry = (finish, next(self._arrivals), report.worker, start, sample)
            heapq.heappush(self._pending, entry)
        holder = self._holders.get(report.worker)
        if holder is None:
            holder = self._holders[report.worker] = _Holder(0, 0, 0, now)
        holder.demand, holder.in_flight, holder.reported_at = report.demand, report.in_flight, now
        # What it may admit until this answer lands: as it says, or else the last grant it was sent (a worker
        # renews one endpoint at a time, so that one has landed).
        holder.honoured = holder.share if report.share is None else report.share
        self._learn_known(now)
        if report.cooling_s > 0 and self.cooldown is not None:
            self.cooldown.hold(now + report.cooling_s, f"{report.worker}'s provider asked for a pause")
        cooling_s = 0.0
        if self.cooldown is not None and self.cooldown.active(now):
            cooling_s = (self.cooldown.until or now) - now
            share = 0
        else:
            fair = fair_shares(self.limit.limit, {w: h.demand for w, h in self._holders.items()})[report.worker]
            lent = sum(h.reserved for w, h in self._holders.items() if w != report.worker)
            share = max(0, min(fair, self.limit.limit - lent))
        holder.share = share
        holder.expires_at = now + self.lease_ttl_s
        if report.demand == 0 and report.in_flight == 0:
            del self._holders[report.worker]  # an idle worker gives its grant back
            self._learn_known(now)  # and no longer holds back the samples of the others
        self.peak_granted = max(self.peak_granted, self.granted)
        return Grant(share, self.lease_ttl_s, self.limit.epoch, self.limit.limit, cooling_s)

    def _learn_known(self, now: float) -> None:
        """Feed the limit every pending sample that finished before each live holder's last report."""
        known = min((h.reported_at for h in self._holders.values()), default=now)
        if not self._pending or self._pending[0][0] > known:
            return
        # What the others occupy (their grant, or more after a cut) stands for their requests in flight: a
        # busy worker fills its grant, and a snapshot of its in-flight count is up to one renewal old.
        total = sum(h.using for h in self._holders.values())
        while self._pending and self._pending[0][0] <= known:
            _, _, worker, start, sample = heapq.heappop(self._pending)
            holder = self._holders.get(worker)
            self._learn(start, sample, total - (holder.using if holder is not None else 0))

    def _learn(self, start: float, sample: Sample, others_in_flight: int) -> None:
        # The worker saw only its own requests; the limit needs the endpoint's, so add what the others occupy.
        epoch, at_start = sample.epoch, sample.in_flight_at_start
        answered = epoch is not None and epoch < self.limit.epoch  # judged before this sample can cut
        self.samples += 1
        self.dropped += sample.dropped
        self.limit.on_sample(
            start,
            sample.rtt_s,
            sample.in_flight + others_in_flight,
            sample.dropped,
            epoch=epoch,
            in_flight_at_start=None if at_start is None else at_start + others_in_flight,
            cause=Outcome.RATE_LIMITED if sample.rate_limited else None,
        )
        if self.cooldown is None:
            return
        finish = start + sample.rtt_s
        if sample.rate_limited:  # only a 429 is evidence of a spent budget; a 503 or a timeout only cuts the limit
            self.cooldown.on_rate_limited(finish, retry_after_s=None, rate_limit=_NO_HEADERS, counts=not answered)
        elif not sample.dropped:
            self.cooldown.on_success(finish, _NO_HEADERS)

    def _reclaim(self, now: float) -> None:
        for worker in [w for w, h in self._holders.items() if h.expires_at < now]:
            del self._holders[worker]  # a silent holder: its samples so far are learned, it holds none back
        if self.cooldown is not None:
            self.cooldown.expire(now)

    @property
    def pending_samples(self) -> int:
        """Samples received but not yet fed to the limit (waiting for the other holders' reports)."""
        return len(self._pending)

    @property
    def granted(self) -> int:
        """Capacity lent to live holders now."""
        return sum(h.share for h in self._holders.values())

    def holders(self) -> dict[str, int]:
        """Each live holder's share."""
        return {w: h.share for w, h in self._holders.items()}

    def snapshot(self) -> dict[str, object]:
        """The limit, what is lent and to whom, and the sample counts (for reports and tests)."""
        now = self._clock.now()
        return {
            "key": self.label,
            "limit": self.limit.limit,
            "epoch": self.limit.epoch,
            "granted": self.granted,
            "peak_granted": self.peak_granted,
            "holders": self.holders(),
            "samples": self.samples,
            "dropped": self.dropped,
            "cooling": bool(self.cooldown is not None and self.cooldown.active(now)),
        }
