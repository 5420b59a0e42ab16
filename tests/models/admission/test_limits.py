"""Limit algorithms: AIMD (slow start, increase at full use, decrease, dampening, probing), composite, fixed."""

from __future__ import annotations

import heapq

import pytest

from rowloom.bench.limit_sim import ServerModel, peak_throughput, simulate
from rowloom.concurrency.clock import ManualClock
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.admission import AIMDLimit, CompositeLimit, FixedLimit, LatencyLimit, Limit, limit_from_config


def successes(limit: Limit, n: int, *, in_flight: int | None = None, start: float = 0.0, rtt: float = 1.0) -> None:
    """`n` successes, each at `in_flight` (default: the limit at that moment, i.e. fully used)."""
    for _ in range(n):
        limit.on_sample(start, rtt, limit.limit if in_flight is None else in_flight, False, epoch=limit.epoch)


def overload(limit: Limit, *, at: float, in_flight: int, epoch: int | None = None, admitted_at: int | None = None):
    """A fast 429 that came back at time `at`; `admitted_at` = in flight right after it was admitted."""
    limit.on_sample(
        at - 0.01,
        0.01,
        in_flight,
        True,
        epoch=limit.epoch if epoch is None else epoch,
        in_flight_at_start=admitted_at,
    )


def simulate_hosted(limit: Limit, *, capacity: int, seconds: float, rtt: float = 1.0) -> tuple[int, int]:
    """An endpoint that serves `capacity` requests at once and answers the rest 429 at once (fast).

    The client has unlimited demand: whenever in flight is below the limit it sends another request.
    Round trips vary by ±10% (deterministically). Returns (overload signals, successes).
    """
    now, seq, active, overloads, served = 0.0, 0, 0, 0, 0
    flights: list[tuple[float, int, bool, float, int, int]] = []
    while now < seconds:
        while len(flights) < limit.limit:
            accepted = active < capacity
            active += accepted
            took = rtt * (0.9 + 0.2 * ((seq * 37) % 101) / 100) if accepted else rtt / 100
            heapq.heappush(flights, (now + took, seq, accepted, now, limit.epoch, len(flights) + 1))
            seq += 1
        finish, _, accepted, start, epoch, at_start = heapq.heappop(flights)
        now = finish
        if accepted:
            active -= 1
            served += 1
        else:
            overloads += 1
        limit.on_sample(start, finish - start, len(flights) + 1, not accepted, epoch=epoch, in_flight_at_start=at_start)
    return overloads, served


# ------------------------------------------------------------------ AIMD


def test_aimd_grows_additively_only_when_the_limit_is_fully_used():
    limit = AIMDLimit(initial=10, max_limit=64, slow_start=False)
    successes(limit, 200, in_flight=6)
    assert limit.limit == 10  # headroom that is never used proves nothing
    successes(limit, 10)  # one window (= the limit) of fully-used successes
    assert limit.limit == 11
    successes(limit, 9)
    assert limit.limit == 11
    successes(limit, 2)
    assert limit.limit == 12


def test_aimd_decreases_multiplicatively_on_overload():
    limit = AIMDLimit(initial=40, max_limit=64, slow_start=False, decrease_factor=0.5)
    limit.on_sample(0.0, 0.01, 40, True, epoch=limit.epoch)
    assert limit.limit == 20
    limit.on_sample(0.0, 0.01, 20, True, epoch=limit.epoch)
    assert limit.limit == 10


def test_aimd_cuts_once_for_a_burst_of_rejections_admitted_under_the_same_limit():
    limit = AIMDLimit(initial=40, max_limit=64, slow_start=False, decrease_factor=0.5)
    burst_epoch = limit.epoch
    for _ in range(25):  # 25 requests admitted under limit 40 all come back 429
        limit.on_sample(0.0, 0.01, 40, True, epoch=burst_epoch)
    assert limit.limit == 20
    assert limit.dampened == 24
    limit.on_sample(0.0, 0.01, 20, True, epoch=limit.epoch)  # admitted after the cut: new evidence
    assert limit.limit == 10


def test_aimd_never_leaves_its_bounds():
    limit = AIMDLimit(initial=3, min_limit=2, max_limit=5, slow_start=True)
    successes(limit, 50)
    assert limit.limit == 5
    for _ in range(10):
        limit.on_sample(0.0, 0.01, 5, True, epoch=limit.epoch)
    assert limit.limit == 2


def test_slow_start_doubles_per_round_trip_until_the_first_overload():
    limit = AIMDLimit(initial=4, max_limit=64)
    successes(limit, 4)  # one round trip at limit 4
    assert limit.limit == 8
    successes(limit, 8)
    assert limit.limit == 16
    limit.on_sample(0.0, 0.01, 16, True, epoch=limit.epoch)
    assert not limit.in_slow_start
    before = limit.limit
    successes(limit, before)  # now one window adds at most one
    assert limit.limit <= before + 1


def test_first_overload_prefers_the_concurrency_that_was_succeeding_over_a_blind_cut():
    limit = AIMDLimit(initial=40, max_limit=64, decrease_factor=0.75)
    successes(limit, 20, start=0.0, rtt=1.0)
    assert limit.limit == 60  # slow start grew it by one per success
    overload(limit, at=1.0, in_flight=60, admitted_at=23)  # 22 were being served when the 429 was earned
    assert limit.limit == 22  # a blind cut would give 45, still far above what works
    assert limit.overload_level == 23


def test_first_overload_without_admission_counts_uses_recent_successes():
    limit = AIMDLimit(initial=40, max_limit=64, decrease_factor=0.75)
    successes(limit, 20, start=0.0, rtt=1.0)  # 20 came back fine within the last round trip
    overload(limit, at=1.0, in_flight=60)
    assert limit.limit == 20


def test_a_later_overload_does_not_cut_below_the_concurrency_succeeding_since_the_last_cut():
    limit = AIMDLimit(initial=20, max_limit=64, slow_start=False, decrease_factor=0.5)
    successes(limit, 18, in_flight=18, start=0.0, rtt=1.0)
    overload(limit, at=1.0, in_flight=20)
    assert limit.limit == 18  # not 10: 18 at once was just shown to work
    successes(limit, 30, in_flight=18, start=5.0, rtt=1.0)
    overload(limit, at=6.0, in_flight=18, epoch=0)  # from before the cut: its successes don't count either
    assert limit.limit == 18


def test_growth_slows_near_the_level_where_overload_began():
    limit = AIMDLimit(initial=20, max_limit=64, slow_start=False, probe_step=0.25, probe_zone=0.1)
    successes(limit, 20, in_flight=19)
    overload(limit, at=1.0, in_flight=20)
    assert limit.limit == 19 and limit.overload_level == 20
    windows = 0
    while limit.limit < 20:
        successes(limit, limit.limit)
        windows += 1
    assert windows == 4  # 0.25 per window near the edge, instead of one window at full step


def test_growth_speeds_up_again_once_well_past_the_old_overload_level():
    limit = AIMDLimit(initial=20, max_limit=64, slow_start=False, probe_step=0.25, probe_zone=0.1)
    limit.on_sample(0.0, 0.01, 10, True, epoch=limit.epoch)  # overload began at 10
    assert limit.limit == 15 and limit.overload_level == 10
    successes(limit, 15)
    assert limit.limit == 16  # 15 > 10 * 1.1: the old edge is forgotten, full step
    assert limit.overload_level is None


def test_slow_start_discovers_a_capacity_below_the_ceiling_with_few_overload_signals():
    limit = AIMDLimit(initial=8, max_limit=64)
    overloads, _ = simulate_hosted(limit, capacity=16, seconds=4.0)
    assert limit.limit == 16
    assert overloads <= 2  # an oversubscribed ceiling costs a handful of 429s, not a burst of them


def test_steady_state_holds_the_capacity_and_probes_it_rarely():
    limit = AIMDLimit(initial=8, max_limit=64)
    overloads, served = simulate_hosted(limit, capacity=16, seconds=60.0)
    assert 15 <= limit.limit <= 17
    assert served > 0.95 * 16 * 60
    assert overloads / (overloads + served) < 0.02


def test_slow_start_reaches_a_ceiling_below_capacity_without_any_overload():
    limit = AIMDLimit(initial=8, max_limit=16)
    overloads, _ = simulate_hosted(limit, capacity=16, seconds=30.0)
    assert overloads == 0 and limit.limit == 16


def test_aimd_follows_a_capacity_drop():
    limit = AIMDLimit(initial=8, max_limit=128)
    simulate_hosted(limit, capacity=64, seconds=20.0)
    assert limit.limit >= 56
    simulate_hosted(limit, capacity=16, seconds=10.0)
    assert 12 <= limit.limit <= 17


# ------------------------------------------------------------------ composite, fixed, factory


def past_the_knee(limit: Limit, clock: ManualClock) -> None:
    """Run a limit against a server that queues past 8 in flight (latency then grows in proportion to load)."""
    simulate(limit, ServerModel("sharing", capacity=8, latency_s=0.2, sigma=0.2), seconds=30, clock=clock)


def test_composite_allows_the_minimum_of_its_parts():
    clock = ManualClock()
    aimd = AIMDLimit(initial=30, max_limit=64, slow_start=False)
    latency = LatencyLimit(clock=clock, start=64, max_limit=64)
    both = CompositeLimit([aimd, latency])
    assert both.limit == 30
    past_the_knee(both, clock)
    assert latency.limit <= 12 and both.limit == latency.limit
    assert "LatencyLimit" in both.reason


def test_composite_feeds_every_part_and_its_epoch_dates_the_newest_cut():
    clock = ManualClock()
    aimd = AIMDLimit(initial=30, max_limit=64, slow_start=False, decrease_factor=0.5)
    latency = LatencyLimit(clock=clock, start=64, max_limit=64)
    both = CompositeLimit([aimd, latency])
    both.on_sample(0.0, 0.01, 30, True, epoch=both.epoch)
    assert aimd.limit == 15 and both.epoch == aimd.epoch
    admitted_after_aimd_cut = both.epoch
    past_the_knee(both, clock)
    assert latency.epoch > aimd.epoch and both.epoch == latency.epoch
    assert latency.curve.count > 0  # the composite fed its latency part every success
    # a 429 admitted after AIMD's cut (but before the latency cut) is new evidence for AIMD
    before, aimd_epoch = aimd.limit, aimd.epoch
    both.on_sample(clock.now(), 0.01, 15, True, epoch=admitted_after_aimd_cut)
    assert aimd.limit < before and aimd.epoch > aimd_epoch


def test_fixed_limit_never_moves():
    limit = FixedLimit(5)
    limit.on_sample(0.0, 0.01, 5, True, epoch=0)
    successes(limit, 50)
    assert limit.limit == 5 and limit.epoch == 0


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [("aimd", AIMDLimit), ("latency", LatencyLimit), ("composite", CompositeLimit), ("fixed", FixedLimit)],
)
def test_factory_builds_the_configured_algorithm_below_the_ceiling(algorithm, kind):
    config = RequestAdmissionConfig(algorithm=algorithm, initial_limit=8)
    limit = limit_from_config(config, ceiling=32, clock=ManualClock())
    assert isinstance(limit, kind)
    assert limit.max_limit == 32
    assert limit.limit == (32 if algorithm == "fixed" else 8)


def test_a_burst_of_rejections_holds_the_limit_at_what_is_still_in_service_without_more_cuts():
    limit = AIMDLimit(initial=27, max_limit=64, slow_start=False)
    successes(limit, 16, in_flight=16, start=0.0, rtt=0.2)  # the server was just serving 16 of ours
    first_epoch = limit.epoch
    overload(limit, at=0.25, in_flight=27)
    cut_epoch = limit.epoch
    assert cut_epoch != first_epoch
    for in_flight in range(26, 16, -1):  # the rest of the burst comes back; 16 stay in service
        overload(limit, at=0.26, in_flight=in_flight, epoch=first_epoch)
    assert limit.limit == 16
    assert limit.epoch == cut_epoch  # one congestion event: one cut, the rest only held


def test_when_the_server_serves_none_of_ours_a_burst_is_answered_by_one_cut_only():
    limit = AIMDLimit(initial=8, max_limit=8, slow_start=False)
    first_epoch = limit.epoch
    overload(limit, at=1.0, in_flight=8)
    for in_flight in range(7, 0, -1):
        overload(limit, at=1.0, in_flight=in_flight, epoch=first_epoch)
    assert limit.limit == 6


def test_an_overload_at_the_floor_cuts_nothing_and_leaves_growth_as_it_was():
    # One request in flight at the floor failing says nothing about the edge above it: before, it marked an
    # edge at the floor, and the limit crept up from 1 at a fraction of a request per window, for good.
    limit = AIMDLimit(initial=1, min_limit=1, max_limit=64, slow_start=False)
    epoch = limit.epoch
    for at in (1.0, 2.0, 3.0):
        overload(limit, at=at, in_flight=1)
    assert (limit.limit, limit.epoch, limit.overload_level) == (1, epoch, None)
    successes(limit, 1, start=4.0)  # one fully-used window at limit 1
    assert limit.limit == 2


def test_probing_the_same_edge_again_and_again_slows_down():
    limit = AIMDLimit(initial=20, max_limit=64, slow_start=False, probe_step=0.2, probe_zone=0.1)
    successes(limit, 20, in_flight=19)
    overload(limit, at=1.0, in_flight=20)

    def windows_to_reach_edge() -> int:
        windows = 0
        while limit.limit < 20:
            successes(limit, limit.limit, start=2.0 + windows)
            windows += 1
        return windows

    first = windows_to_reach_edge()
    overload(limit, at=50.0, in_flight=20)  # the edge answers 429 again
    second = windows_to_reach_edge()
    assert second > first


def test_successes_admitted_before_a_cut_do_not_prop_up_the_next_cut():
    """After a capacity drop, requests admitted under the old capacity still succeed; they prove nothing now."""
    limit = AIMDLimit(initial=64, max_limit=64, slow_start=False, decrease_factor=0.5)
    overload(limit, at=10.0, in_flight=64)  # cut at t=10
    assert limit.limit == 32  # no successes seen yet: a blind cut
    before = limit.limit
    successes(limit, 60, in_flight=60, start=9.8, rtt=0.25)  # admitted before the cut, finished after it
    overload(limit, at=10.3, in_flight=before)
    assert limit.limit <= before * 0.5 + 1  # a plain multiplicative cut, not "back to 60 succeeding"


@pytest.mark.parametrize("capacity", [4, 8])
def test_aimd_probes_a_small_endpoints_edge_gently_instead_of_hitting_it_every_few_windows(capacity):
    # Its edge zone is at least one request wide: 10% of 8 is less than one step of the limit, and an edge
    # that goes unseen is hit every cycle (6% of requests answered 429 at capacity 8 before).
    server = ServerModel("hosted", capacity, 0.2, 0.5)
    clock = ManualClock()
    limit = limit_from_config(RequestAdmissionConfig(), ceiling=64, clock=clock, start=16)
    run = simulate(limit, server, seconds=120, seed=1, clock=clock)
    assert run.share_rejected < 0.01
    assert run.throughput >= 0.97 * peak_throughput(server, seed=1)
