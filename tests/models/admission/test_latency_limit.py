"""The latency limit and the load curve it learns: spread that does not grow with load never lowers the limit;
latency that grows with load (a queue, processor sharing, a local model past its slots) brings it to just
past the knee. Servers are simulated in virtual time with seeded lognormal noise (`rowloom.bench.limit_sim`)."""

from __future__ import annotations

import math
import random

import pytest

from rowloom.bench.limit_sim import RequestMix, ServerModel, peak_throughput, simulate
from rowloom.concurrency.clock import ManualClock
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import ConfigError
from rowloom.models.admission import LatencyLimit, limit_from_config
from rowloom.models.admission.limits.load_curve import LoadCurve

SEEDS = (0, 1, 2)


def composite(ceiling: int, clock: ManualClock):
    """What every user gets: the default configuration's limit."""
    return limit_from_config(RequestAdmissionConfig(), ceiling=ceiling, clock=clock)


# ------------------------------------------------------------------ the curve


def feed(curve: LoadCurve, rng: random.Random, *, load: float, n: int, rtt, sigma: float, now: float = 0.0):
    for _ in range(n):
        tokens = rng.randint(20, 600)
        noise = math.exp(rng.gauss(-sigma * sigma / 2, sigma))
        curve.add(now, load, rtt(load, tokens) * noise, tokens)


def test_curve_learns_that_latency_is_proportional_to_reply_length():
    curve, rng = LoadCurve(), random.Random(1)
    feed(curve, rng, load=8, n=400, rtt=lambda load, k: 0.002 * k, sigma=0.2)
    assert curve.length_slope() == pytest.approx(1.0, abs=0.05)
    assert curve.spread() == pytest.approx(0.2, abs=0.03)  # the length is taken out, the noise remains


def test_curve_sees_no_length_effect_where_there_is_none():
    curve, rng = LoadCurve(), random.Random(2)
    feed(curve, rng, load=8, n=400, rtt=lambda load, k: 0.2, sigma=0.5)
    assert curve.length_slope() < 0.1
    assert curve.spread() == pytest.approx(0.5, abs=0.05)


def test_curve_finds_the_knee_of_a_server_that_queues_past_its_capacity():
    curve, rng = LoadCurve(), random.Random(3)
    for load in (4, 8, 12, 16, 20, 24, 32):
        feed(curve, rng, load=load, n=60, rtt=lambda load, k: 0.2 * max(1.0, load / 16), sigma=0.3)
    knee = curve.knee(min_weight=10)
    assert knee is not None and not knee.past
    assert 12 <= knee.load <= 20


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_curve_finds_no_knee_in_spread_alone(sigma):
    for seed in SEEDS:
        curve, rng = LoadCurve(), random.Random(seed)
        for load in (4, 8, 12, 16, 20, 24, 32):
            feed(curve, rng, load=load, n=60, rtt=lambda load, k: 0.2, sigma=sigma)
        knee = curve.knee(min_weight=10)
        assert knee is not None and knee.load is None and not knee.past


def test_curve_says_every_load_is_past_the_knee_when_latency_grows_in_proportion_everywhere():
    curve, rng = LoadCurve(), random.Random(4)
    for load in (8, 12, 16):
        feed(curve, rng, load=load, n=200, rtt=lambda load, k: 0.5 * load, sigma=0.1)
    knee = curve.knee(min_weight=10)
    assert knee is not None and knee.past and knee.lowest == pytest.approx(8, rel=0.1)


def test_curve_places_the_knee_just_above_a_lowest_load_whose_latency_sits_above_the_proportional_line():
    # A probe that landed just under the knee at 8: its latency is flat with the knee's, above the line of slope
    # one through the loads past it.
    curve, rng = LoadCurve(), random.Random(5)
    for load in (7, 16, 20, 24):
        feed(curve, rng, load=load, n=200, rtt=lambda load, k: 0.2 * max(1.0, load / 8), sigma=0.1)
    assert 7.5 <= curve.flat_until(min_weight=10) <= 9.0
    past = LoadCurve()
    for load in (8, 12, 16):
        feed(past, rng, load=load, n=200, rtt=lambda load, k: 0.5 * load, sigma=0.1)
    assert past.flat_until(min_weight=10) == pytest.approx(8, rel=0.05)


def test_curve_forgets_old_points():
    curve, rng = LoadCurve(memory_s=10.0), random.Random(5)
    feed(curve, rng, load=4, n=50, rtt=lambda load, k: 0.2, sigma=0.1, now=0.0)
    feed(curve, rng, load=16, n=50, rtt=lambda load, k: 0.2, sigma=0.1, now=30.0)
    weights = dict((round(load), w) for load, w, _ in curve.levels())
    assert weights[16] == pytest.approx(50) and weights[4] == pytest.approx(50 * math.exp(-3), rel=0.01)


# ------------------------------------------------------------------ the limit against simulated servers


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_spread_that_does_not_grow_with_load_never_lowers_the_limit(sigma):
    # A server with room for everything: latency spreads like real replies but does not depend on load.
    server = ServerModel("hosted", capacity=10_000, latency_s=0.2, sigma=sigma)
    for seed in SEEDS:
        clock = ManualClock()
        limit = LatencyLimit(clock=clock, initial=16, max_limit=64)
        run = simulate(limit, server, seconds=60, seed=seed, clock=clock)
        assert limit.epoch == 0, limit.reason  # never cut (a probe below the load may lower it for a while)
        assert max(value for _, value in run.limits) == 64  # and grew to its ceiling


def test_replies_of_very_different_lengths_are_not_mistaken_for_queueing():
    server = ServerModel("hosted", capacity=10_000, latency_s=0.02, per_token_s=0.002)
    for seed in SEEDS:
        clock = ManualClock()
        limit = LatencyLimit(clock=clock, initial=16, max_limit=64)
        run = simulate(limit, server, seconds=60, mix=RequestMix((32, 128, 512), 20, 600), seed=seed, clock=clock)
        assert limit.epoch == 0 and max(value for _, value in run.limits) == 64, limit.reason


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_the_default_limit_holds_a_hosted_capacity_under_spread(sigma):
    server = ServerModel("hosted", capacity=16, latency_s=0.2, sigma=sigma)
    for seed in SEEDS:
        clock = ManualClock()
        run = simulate(composite(64, clock), server, seconds=60, seed=seed, clock=clock)
        assert run.mean_limit >= 15.0
        assert run.throughput >= 0.95 * peak_throughput(server, seed=seed)
        assert run.share_rejected <= 0.03


@pytest.mark.parametrize(
    "server",
    [
        ServerModel("sharing", capacity=16, latency_s=0.2, sigma=0.5),
        ServerModel("sharing", capacity=16, latency_s=0.02, per_token_s=0.002),
    ],
    ids=["spread", "mixed_lengths"],
)
def test_latency_that_grows_with_load_settles_the_limit_just_past_the_knee(server):
    mix = RequestMix((32, 128, 512), 20, 600) if server.per_token_s else None
    for seed in SEEDS:
        clock = ManualClock()
        run = simulate(composite(128, clock), server, seconds=60, mix=mix, seed=seed, clock=clock)
        assert 15.0 <= run.mean_limit <= 24.0
        assert run.throughput >= 0.9 * peak_throughput(server, mix, seed)
        assert run.latency_over_no_load <= 1.5


def test_a_server_past_its_knee_from_the_first_request_is_found_by_probing_lower():
    # A local model on a CPU: four slots, but decoding four at once is four times slower (no batching gain),
    # and the limit starts at 16 (twelve requests queue in the server).
    server = ServerModel("slots", capacity=4, latency_s=0.1, sigma=0.2, per_token_s=0.015, batch_cost=1.0)
    mix = RequestMix((40, 64, 160), 10, 160)
    clock = ManualClock()
    limit = composite(16, clock)
    run = simulate(limit, server, seconds=300, mix=mix, seed=0, clock=clock)
    assert limit.limit <= 4
    assert run.throughput >= 0.95 * peak_throughput(server, mix)


def test_a_probe_that_lands_under_the_knee_is_not_followed_by_a_deeper_one():
    # Slow start from 16 on a vLLM-style server of capacity 8: the first probe (to half the lowest load) lands
    # just under the knee. Halving again would idle most of the server for a second to learn only latency: the
    # first seconds of the run keep more than 91% of the server's peak throughput (86-88% when it halved again).
    server = ServerModel("sharing", capacity=8, latency_s=0.2, sigma=0.5)
    shares = []
    for seed in range(5):
        clock = ManualClock()
        limit = limit_from_config(RequestAdmissionConfig(), ceiling=128, clock=clock, start=16)
        run = simulate(limit, server, seconds=7, seed=seed, clock=clock, measured_from=0.0)
        shares.append(run.throughput / peak_throughput(server, seed=seed))
    assert sum(shares) / len(shares) >= 0.91, shares


def test_batching_that_still_pays_keeps_the_limit_growing_to_the_slots():
    # A GPU server with 32 slots: each extra request in a batch costs 5%, so throughput grows up to 32.
    server = ServerModel("slots", capacity=32, latency_s=0.05, sigma=0.3, per_token_s=0.005, batch_cost=0.05)
    mix = RequestMix((128, 256), 30, 300)
    clock = ManualClock()
    run = simulate(composite(128, clock), server, seconds=120, mix=mix, seed=0, clock=clock)
    assert run.mean_limit >= 30
    assert run.throughput >= 0.95 * peak_throughput(server, mix)


# ------------------------------------------------------------------ protocol details


def test_overload_samples_carry_no_latency_information():
    clock = ManualClock()
    limit = LatencyLimit(clock=clock, max_limit=64)
    before = limit.limit
    for _ in range(200):
        limit.on_sample(0.0, 0.001, 50, True)  # fast 429s are not a faster server
    assert limit.curve.count == 0 and limit.limit == before


def test_the_limit_never_runs_more_than_half_again_ahead_of_the_loads_it_has_measured():
    # A server that never says it is full: growth may only go where latency can still be seen.
    clock = ManualClock()
    limit = LatencyLimit(clock=clock, start=16, max_limit=128)
    assert limit.limit == 16
    for _ in range(40):
        clock.advance(0.01)
        limit.on_sample(clock.now(), 0.2, 16, False, load=16.0)
    assert limit.limit == 24


def test_a_restart_after_an_outage_never_caps_below_the_restart_value():
    clock = ManualClock()
    limit = LatencyLimit(clock=clock, initial=4, max_limit=64)
    limit.restart(10)
    assert limit.limit == 10


def test_retired_gradient_settings_name_the_fix():
    with pytest.raises(ConfigError, match="latency"):
        RequestAdmissionConfig.model_validate({"algorithm": "gradient"})
    with pytest.raises(ConfigError, match="latency_tolerance"):
        RequestAdmissionConfig.model_validate({"gradient_tolerance": 1.3})


def test_the_knee_fits_of_every_inner_point_equal_fitting_each_moved_curve_on_its_own():
    import random

    from rowloom.models.admission.limits.load_curve import _fit_line, _knee_fits

    rng = random.Random(7)
    for trial in range(300):
        xs = sorted(rng.uniform(0.0, 5.0) for _ in range(rng.randint(3, 14)))
        if trial % 4 == 0:
            xs[2] = xs[1]  # equal loads stay left of a knee at them
        points = [(x, rng.uniform(1.0, 200.0), rng.uniform(-2.0, 3.0) + x * rng.random()) for x in xs]
        for (knee, slope, sse), (at, _, _) in zip(_knee_fits(points), points[1:-1], strict=True):
            moved = [(min(x, at), w, y - max(0.0, x - at)) for x, w, y in points]
            expected_slope, expected_sse = _fit_line(moved, 1.0)
            assert knee == at
            assert slope == pytest.approx(expected_slope, abs=1e-9)
            assert sse == pytest.approx(expected_sse, rel=1e-9, abs=1e-9)
