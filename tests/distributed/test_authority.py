"""The authority's core without Ray: grants within the limit, reclaim, one limit fed by every worker, fallback."""

from __future__ import annotations

import asyncio
import random

from rowloom.concurrency.clock import ManualClock
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.engine.distributed.authority import CapacityAuthority, fair_shares
from rowloom.engine.distributed.grants import FALLBACK_SHARE, Grant, GrantLimit, GrantRenewer, Report, Sample
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.limits import AIMDLimit, limit_from_config


def _authority(clock: ManualClock, *, initial: int = 16, ceiling: int = 64, cooldown: Cooldown | None = None):
    limit = AIMDLimit(initial=initial, min_limit=1, max_limit=ceiling, slow_start=False)
    return CapacityAuthority("sim/sim-small/chat", limit, cooldown=cooldown, lease_ttl_s=1.0, clock=clock)


def test_fair_shares_never_exceed_limit_or_demand():
    rng = random.Random(7)
    for _ in range(2000):
        limit = rng.randint(0, 40)
        demands = {f"w{i}": rng.randint(0, 30) for i in range(rng.randint(1, 8))}
        shares = fair_shares(limit, demands)
        assert sum(shares.values()) <= limit
        assert all(0 <= shares[w] <= demands[w] for w in demands)
        if sum(demands.values()) >= limit:
            assert sum(shares.values()) == limit  # nothing is left idle while somebody wants it


def test_grants_sum_within_limit_under_random_demand():
    clock = ManualClock()
    authority = _authority(clock)
    rng = random.Random(3)
    workers = [f"w{i}" for i in range(5)]
    for _ in range(3000):
        worker = rng.choice(workers)
        authority.renew(Report(worker, rng.randint(0, 40), rng.randint(0, 8)))
        assert authority.granted <= authority.limit.limit
        clock.advance(rng.random() * 0.05)


def test_cut_is_absorbed_once_every_holder_renews():
    clock = ManualClock()
    authority = _authority(clock)
    for worker in ("a", "b"):
        authority.renew(Report(worker, 40, 8))
    authority.renew(Report("a", 40, 8))  # a shrinks to its fair half
    authority.renew(Report("a", 40, 8, share=8))  # and, once it applied that, says so: b takes the other half
    authority.renew(Report("b", 40, 8))
    assert authority.holders() == {"a": 8, "b": 8}
    dropped = Sample(0.1, 0.1, 8, True, authority.limit.epoch, 8)
    authority.renew(Report("a", 40, 8, (dropped,)))  # a 429 cuts the one limit
    assert authority.limit.limit < 16
    authority.renew(Report("b", 40, 8))
    assert authority.granted <= authority.limit.limit


def test_expired_grants_are_reclaimed():
    clock = ManualClock()
    authority = _authority(clock)
    authority.renew(Report("a", 40, 0))
    assert authority.holders() == {"a": 16}
    assert authority.renew(Report("b", 40, 0)).share == 0  # a still holds everything
    clock.advance(1.5)  # a went silent past its lease
    assert authority.renew(Report("b", 40, 0)).share == 16
    assert "a" not in authority.holders()


def test_idle_worker_returns_its_grant():
    clock = ManualClock()
    authority = _authority(clock)
    authority.renew(Report("a", 40, 0))
    authority.renew(Report("a", 0, 0))
    assert authority.holders() == {}
    assert authority.renew(Report("b", 40, 0)).share == 16


def test_samples_from_every_worker_move_the_one_limit():
    clock = ManualClock()
    config = RequestAdmissionConfig(initial_limit=4)
    authority = CapacityAuthority("k", limit_from_config(config, ceiling=64, clock=clock), clock=clock)
    before = authority.limit.limit
    for _ in range(6):  # slow start: full-use successes from two workers grow the shared limit
        for worker in ("a", "b"):
            grant = authority.renew(Report(worker, 64, 2))
            ok = tuple(Sample(0.05, 0.05, grant.share, False, grant.epoch, grant.share) for _ in range(grant.share))
            authority.renew(Report(worker, 64, grant.share, ok))
        clock.advance(0.1)
    assert authority.limit.limit > before
    grown = authority.limit.limit
    grant = authority.renew(Report("a", 64, 2))
    authority.renew(Report("a", 64, 2, (Sample(0.05, 0.05, grant.share, True, grant.epoch, grant.share),)))
    assert authority.limit.limit == grown  # held until b has reported past it (b may have seen successes)
    authority.renew(Report("b", 64, 2))
    assert authority.limit.limit < grown


def test_an_overload_is_judged_against_every_workers_successes():
    clock = ManualClock()
    authority = _authority(clock, initial=16)
    for worker in ("a", "b"):
        authority.renew(Report(worker, 8, 0))
    clock.advance(0.2)
    epoch = authority.limit.epoch
    successes = tuple(Sample(0.08, 0.05, 8, False, epoch, 8) for _ in range(8))  # finished 30 ms ago
    overload = Sample(0.02, 0.01, 8, True, epoch, 8)  # answered 10 ms ago
    authority.renew(Report("a", 8, 8, (*successes, overload)))
    assert authority.pending_samples == 9 and authority.limit.limit == 16  # b's view of that moment is missing
    authority.renew(Report("b", 8, 8, successes))
    # 16 requests were succeeding when the overload came: back to just below that, not a blind cut to 12 that
    # counting only a's successes would give.
    assert authority.pending_samples == 0 and authority.limit.limit == 15


def test_lent_room_excludes_requests_still_running_past_a_cut():
    clock = ManualClock()
    authority = _authority(clock, initial=16)
    authority.renew(Report("a", 16, 0))
    authority.renew(Report("a", 16, 16))  # a holds 16 and uses them all
    authority.limit.on_sample(clock.now(), 0.05, 16, True, epoch=authority.limit.epoch)  # a cut below 16
    assert authority.limit.limit < 16
    assert authority.renew(Report("b", 8, 0)).share == 0
    assert authority.renew(Report("a", 16, 16)).share < 16  # a's fair share shrank, its requests still run
    assert authority.renew(Report("b", 8, 0)).share == 0  # so b is lent nothing they occupy
    assert authority.renew(Report("a", 16, 3)).share < 16
    assert authority.renew(Report("b", 8, 0)).share > 0  # once they finished, b gets its part


def test_a_shrink_is_lent_to_others_only_once_its_holder_applied_it():
    """The cluster's invariant as workers honour it: the shares they admit under sum to at most the limit, also
    while a shrink travels back to its holder (the flake of test_events_trace_report_and_metrics_show_the_whole_
    cluster: b kept admitting under its old 16 while the 12 it gave up was already lent to a: 22 in flight)."""
    clock = ManualClock()
    authority = _authority(clock, initial=16)
    limits = {w: GrantLimit(ceiling=64, clock=clock) for w in ("a", "b")}
    demand = {"a": 0, "b": 16}
    in_transit: list[asyncio.Future[None]] = []

    def renewer(worker: str, *, slow: bool) -> GrantRenewer:
        async def renew(label: str, report: Report) -> Grant:
            grant = authority.renew(report)  # decided now; the answer lands when the test lets it
            if slow:
                in_transit.append(asyncio.get_running_loop().create_future())
                await in_transit[-1]
            return grant

        wants = lambda label: demand[worker]  # noqa: E731
        return GrantRenewer(worker, {"k": limits[worker]}, renew, wants, lambda k: 0, lambda *_: None, clock=clock)

    def admitting() -> int:  # what the workers may have in flight together, each under the share it holds now
        return sum(limit.limit for limit in limits.values())

    async def sent() -> None:  # until the slow worker's report reached the authority
        for _ in range(100):
            if in_transit:
                return
            await asyncio.sleep(0)
        raise AssertionError("the renewal never reached the authority")

    async def answer(renewal: asyncio.Future[None]) -> None:  # let the answer in transit land
        await sent()
        in_transit.pop().set_result(None)
        await renewal

    async def scenario() -> None:
        a, b = renewer("a", slow=False), renewer("b", slow=True)
        await answer(asyncio.ensure_future(b.renew_once()))
        assert limits["b"].limit == 16  # b alone wants the endpoint: all of it
        demand.update(a=16, b=4)  # b's queue ran short between row groups; a's filled up
        shrink = asyncio.ensure_future(b.renew_once())  # b gives 12 back; the answer is on its way
        await sent()
        assert authority.holders()["b"] == 4 and limits["b"].limit == 16  # b still admits under 16
        await a.renew_once()
        assert admitting() <= authority.limit.limit  # before: a was lent the 12 b still admitted under
        await answer(shrink)
        assert limits["b"].limit == 4
        await a.renew_once()
        assert limits["a"].limit == 0  # b's report that it applied the shrink has not come yet
        await answer(asyncio.ensure_future(b.renew_once()))  # it comes: the 12 are free from now on
        await a.renew_once()
        assert limits["a"].limit == 12 and admitting() == authority.limit.limit == 16

    asyncio.run(scenario())


def test_a_grant_lapses_no_later_than_the_authority_reclaims_it():
    """A worker's lease runs from when it asked, not from when the answer landed: once the authority drops a
    silent holder and lends its room to others, that holder no longer admits under its old grant."""
    clock = ManualClock()
    authority = _authority(clock, initial=16)  # leases of 1 s
    limit = GrantLimit(ceiling=64, clock=clock)

    async def slow_renew(label: str, report: Report) -> Grant:
        grant = authority.renew(report)
        clock.advance(0.4)  # the answer takes 0.4 s to land (a busy event loop, a loaded host)
        return grant

    renewer = GrantRenewer("b", {"k": limit}, slow_renew, lambda k: 16, lambda k: 0, lambda *_: None, clock=clock)
    asyncio.run(renewer.renew_once())
    assert limit.limit == 16
    clock.advance(0.7)  # b falls silent: 1.1 s after its report, its lease at the authority is over
    assert authority.renew(Report("a", 16, 0)).share == 16  # so a is lent the whole limit
    assert limit.limit == FALLBACK_SHARE  # before: b trusted its 16 until 1.4 s, and 32 could be in flight


def _overloads(authority: CapacityAuthority, worker: str, count: int, *, rate_limited: bool) -> None:
    for _ in range(count):
        epoch = authority.limit.epoch
        authority.renew(Report(worker, 8, 1, (Sample(0.01, 0.01, 1, True, epoch, 1, rate_limited),)))


def test_repeated_429s_cool_the_endpoint_for_everyone():
    clock = ManualClock()
    authority = _authority(clock, cooldown=Cooldown(threshold=3, default_s=2.0, max_s=30.0))
    authority.renew(Report("a", 8, 0))
    _overloads(authority, "a", 3, rate_limited=True)
    grant = authority.renew(Report("b", 8, 0))
    assert grant.share == 0 and grant.cooling_s > 0
    clock.advance(2.5)
    assert authority.renew(Report("b", 8, 0)).share > 0


def test_timeouts_cut_the_limit_but_pause_nobody():
    clock = ManualClock()
    authority = _authority(clock, cooldown=Cooldown(threshold=3, default_s=2.0, max_s=30.0))
    authority.renew(Report("a", 8, 0))
    before = authority.limit.limit
    _overloads(authority, "a", 5, rate_limited=False)  # 503s or timeouts: a concurrency signal, not a budget
    grant = authority.renew(Report("a", 8, 0))
    assert authority.limit.limit < before and grant.cooling_s == 0 and grant.share > 0
    assert authority.snapshot()["cooling"] is False


def test_a_workers_provider_pause_holds_every_worker():
    clock = ManualClock()
    authority = _authority(clock, cooldown=Cooldown(threshold=3, default_s=2.0, max_s=30.0))
    authority.renew(Report("a", 8, 0, cooling_s=5.0))  # its controller honours a Retry-After of 5 s
    grant = authority.renew(Report("b", 8, 0))
    assert grant.share == 0 and 4.9 < grant.cooling_s <= 5.0
    clock.advance(5.1)
    assert authority.renew(Report("b", 8, 0)).share > 0


def test_grant_limit_tells_429s_from_other_overloads():
    from rowloom.models.types import Outcome

    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    limit.on_sample(0.0, 0.01, 1, True, epoch=0, cause=Outcome.RATE_LIMITED)
    limit.on_sample(0.0, 0.01, 1, True, epoch=0, cause=Outcome.TIMEOUT)
    assert [s.rate_limited for s in limit.take_samples()] == [True, False]


def test_unrenewed_grant_falls_back_to_the_safe_share():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    assert limit.limit == 0  # no load before the first grant
    limit.apply(Grant(share=12, ttl_s=1.0, epoch=3, limit=16))
    assert (limit.limit, limit.epoch) == (12, 3)
    clock.advance(1.5)
    assert limit.expired and limit.limit == FALLBACK_SHARE


def test_renewer_ships_samples_and_wakes_on_growth():
    clock = ManualClock()
    authority = _authority(clock)
    limit = GrantLimit(ceiling=64, clock=clock)
    changes: list[tuple[str, int, int]] = []

    async def renew(label: str, report: Report) -> Grant:
        return authority.renew(report)

    def changed(label: str, old: int, new: int) -> None:
        changes.append((label, old, new))

    renewer = GrantRenewer("w0", {"k": limit}, renew, lambda k: 10, lambda k: 0, changed, clock=clock)
    limit.on_sample(clock.now(), 0.05, 1, False, epoch=0, in_flight_at_start=1)
    asyncio.run(renewer.renew_once())
    assert limit.limit == 10 and changes == [("k", 0, 10)]
    assert authority.samples == 1


def test_unreachable_authority_keeps_the_grant_until_its_lease_ends():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    limit.apply(Grant(share=8, ttl_s=1.0, epoch=0, limit=8))

    async def renew(label: str, report: Report) -> Grant:
        raise ConnectionError("authority gone")

    renewer = GrantRenewer("w0", {"k": limit}, renew, lambda k: 10, lambda k: 0, lambda *_: None, clock=clock)
    asyncio.run(renewer.renew_once())
    assert renewer.failures == 1 and limit.limit == 8
    clock.advance(2.0)
    assert limit.limit == FALLBACK_SHARE


def test_missing_ray_says_how_to_install_it(monkeypatch):
    import sys

    import pytest

    from rowloom.engine.distributed import RayUnavailable, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailable, match=r"pip install 'rowloom\[ray\]'"):
        import_ray()


def test_local_overload_cuts_the_share_once_per_burst():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    limit.apply(Grant(share=16, ttl_s=1.0, epoch=1, limit=16))
    clock.advance(0.01)
    limit.on_sample(0.0, 0.01, 16, True, epoch=1, in_flight_at_start=16)
    assert limit.limit == 12  # cut at once, before the authority hears of it
    limit.on_sample(0.0, 0.01, 15, True, epoch=1, in_flight_at_start=16)
    assert limit.limit == 12  # same burst: admitted before the cut
    assert len(limit.take_samples()) == 2  # both still go to the authority
