"""Endpoint health: down after a run of failures, one probe at a time with backoff, up on the first success, the
circuit breaker and the start-up grace — the pure state machine, then through the controller on a manual clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from rowloom.concurrency.clock import ManualClock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.admission import (
    AIMDLimit,
    CompositeLimit,
    EndpointHealth,
    EndpointUnavailable,
    EndpointUnreachable,
    FixedLimit,
    LatencyLimit,
    RequestAdmissionController,
)
from rowloom.models.types import Outcome
from rowloom.observe.events.request import EndpointDown, EndpointUp, LimitChanged, RequestAdmitted
from rowloom.observe.sinks import MemorySink

REFUSED = Outcome.CONNECTION_ERROR


def health(**knobs) -> EndpointHealth:
    settings = {"down_after": 3, "probe_backoff_s": 0.5, "probe_backoff_max_s": 15.0, "breaker_s": 300.0}
    return EndpointHealth(provider="p", model="m", url="http://127.0.0.1:9/v1", **{**settings, **knobs})


def fail(h: EndpointHealth, now: float, outcome: Outcome = REFUSED, *, admitted_at: float | None = None):
    return h.on_release(outcome, now=now, admitted_at=now if admitted_at is None else admitted_at, limit=16)


def succeed(h: EndpointHealth, now: float, *, admitted_at: float | None = None):
    return h.on_release(Outcome.SUCCESS, now=now, admitted_at=now if admitted_at is None else admitted_at, limit=16)


# ------------------------------------------------------------------ the state machine


def test_down_after_n_unavailability_failures_in_a_row():
    for outcome in (Outcome.CONNECTION_ERROR, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.OVERLOADED):
        h = health()
        succeed(h, 0.0)
        assert fail(h, 1.0, outcome) is None and fail(h, 1.1, outcome) is None and not h.down
        change = fail(h, 1.2, outcome)
        assert change is not None and not change.up and change.failures == 3
        assert h.down and h.outages == 1, outcome


def test_a_success_in_between_starts_the_run_again():
    h = health()
    fail(h, 1.0)
    fail(h, 1.1)
    succeed(h, 1.2)
    fail(h, 1.3)
    fail(h, 1.4)
    assert not h.down


def test_429s_and_4xx_are_answers_neither_counted_nor_a_recovery():
    h = health()
    fail(h, 1.0)
    fail(h, 1.1, Outcome.RATE_LIMITED)
    fail(h, 1.2, Outcome.CLIENT_ERROR)
    fail(h, 1.3, Outcome.CANCELLED)
    assert not h.down
    fail(h, 1.4)
    assert not h.down
    fail(h, 1.5)
    assert h.down


def test_a_single_failing_request_among_successes_is_the_rows_own_failure():
    h = health()
    # One request fails again and again; every attempt of it overlapped successes of other requests.
    for i in range(10):
        start = float(i)
        succeed(h, start + 0.5, admitted_at=start + 0.1)
        assert fail(h, start + 0.9, admitted_at=start) is None
    assert not h.down and h.consecutive == 0


def test_random_errors_among_many_concurrent_successes_never_line_up_into_an_outage():
    """Noise to ignore: 30% of requests fail at random while 16 are in flight. A naive 'three failures in a row'
    counter trips many times over 5,000 completions (0.3^3 per position); a failure counts only when no success
    finished while it was out, which with requests in flight never happens unless the endpoint serves nothing."""
    rng = random.Random(7)
    h = health()
    naive_runs, run = 0, 0
    in_flight = [(0.0, rng.random() < 0.3, rng.uniform(0.05, 0.5)) for _ in range(16)]  # (start, fails, rtt)
    for _ in range(5000):
        in_flight.sort(key=lambda r: r[0] + r[2])
        start, fails, rtt = in_flight.pop(0)
        now = start + rtt
        h.on_release(Outcome.SERVER_ERROR if fails else Outcome.SUCCESS, now=now, admitted_at=start, limit=16)
        run = run + 1 if fails else 0
        naive_runs += run == 3
        assert not h.down
        in_flight.append((now, rng.random() < 0.3, rng.uniform(0.05, 0.5)))
    assert naive_runs > 20  # the noise is real: a naive counter would have gone down this often


def test_an_endpoint_that_serves_nothing_is_down_even_with_many_requests_in_flight():
    """The change to react to: from t=10 on every request fails. Those admitted before the last success do not
    count; the first three admitted after it mark the endpoint down."""
    h = health()
    for i in range(100):
        succeed(h, 9.0 + i * 0.01, admitted_at=8.0 + i * 0.01)  # last success at 9.99
    for i in range(16):  # admitted before the last success, failing when the outage hits
        assert fail(h, 10.0 + i * 0.001, admitted_at=9.5) is None
    assert not h.down
    fail(h, 10.1, admitted_at=10.0)
    fail(h, 10.1, admitted_at=10.0)
    assert fail(h, 10.1, admitted_at=10.0) is not None and h.down


def test_while_down_one_probe_at_a_time_goes_out_when_due():
    h = health()
    for t in (1.0, 1.0, 1.0):
        fail(h, t)
    assert h.admits(1.0, 0) is False and h.probe_due() == 1.5
    assert h.admits(1.49, 0) is False
    assert h.admits(1.5, 0) is True
    assert h.admits(1.5, 1) is False  # one probe (or any request still out) at a time
    assert h.admits(100.0, 1) is False


def test_probes_wait_a_tenth_of_the_outage_so_far_between_the_floor_and_the_cap():
    h = health(probe_backoff_s=0.5, probe_backoff_max_s=4.0)
    for _ in range(3):
        fail(h, 0.0)
    for at, expected in ((1.0, 0.5), (10.0, 1.0), (30.0, 3.0), (100.0, 4.0)):
        assert h.admits(h.probe_due(), 0)
        fail(h, at, admitted_at=h.probe_due())  # the probe fails `at` seconds into the outage
        assert h.probe_due() - at == pytest.approx(expected)


def test_a_request_that_was_out_before_the_outage_is_not_a_probe():
    h = health(probe_backoff_s=0.5)
    for _ in range(3):
        fail(h, 2.0)
    fail(h, 2.5, Outcome.TIMEOUT, admitted_at=1.0)  # a hung request from before timing out
    assert h.probe_due() == 2.5 and h.probes == 0


def test_the_first_success_brings_it_up_with_what_the_outage_cost():
    h = health()
    fail(h, 10.0)
    fail(h, 10.0)
    fail(h, 10.0)
    fail(h, 10.6, admitted_at=10.5)  # a failed probe
    change = succeed(h, 12.0, admitted_at=11.6)  # the next probe answers
    assert change is not None and change.up
    assert change.down_for_s == pytest.approx(2.0) and change.probes == 2
    assert not h.down and h.admits(12.0, 50) and h.probe_due() is None
    assert change.resume_limit(min_limit=1, current=1) == 8  # half the limit before the outage (16)
    assert h.down_s(20.0) == pytest.approx(2.0) and h.outages == 1


def test_a_success_of_a_request_still_in_flight_also_brings_it_up():
    h = health()
    fail(h, 5.0, admitted_at=4.9)  # the failures begin at t=5
    fail(h, 5.1)
    fail(h, 5.2)
    change = succeed(h, 5.3, admitted_at=5.05)  # sent after they began, not a probe
    assert change is not None and change.up and change.probes == 0


def test_after_timeouts_or_5xx_any_success_ends_the_outage_even_of_a_request_sent_before():
    h = health()
    for t in (5.0, 5.01, 5.02):
        fail(h, t, Outcome.SERVER_ERROR)
    change = succeed(h, 5.1, admitted_at=4.8)  # the server answers again: a false alarm costs one round trip
    assert change is not None and change.up


def test_requests_accepted_before_the_failures_began_do_not_end_the_outage():
    """A server shutting down gracefully answers what it had accepted while refusing new connections: after refused
    connections, those late successes must not flap the endpoint up (and burst requests into a closed port)."""
    h = health()
    succeed(h, 4.0)
    for t in (5.0, 5.01, 5.02):
        fail(h, t)
    for t in (5.1, 5.2, 5.3):
        assert succeed(h, t, admitted_at=4.8) is None  # accepted before t=5: drained, says nothing of now
    assert h.down and h.outages == 1 and h.stop_at() == 305.0  # the breaker's clock runs on


def test_the_breaker_stops_after_circuit_breaker_s_of_failures_with_no_success():
    h = health(breaker_s=60.0, grace_s=5.0)
    succeed(h, 0.0)
    fail(h, 10.0, Outcome.RATE_LIMITED)  # 429-forever counts too: the failure run starts here
    assert h.stop_at() == 70.0 and h.stop_due() is None  # up: no timer, each failure checks
    assert h.stop_error(69.9) is None
    error = h.stop_error(70.0)
    assert type(error) is EndpointUnavailable and "http://127.0.0.1:9/v1" in str(error)
    succeed(h, 70.0)
    assert h.stop_at() is None and h.stop_error(1000.0) is None


def test_start_up_grace_applies_only_before_the_first_success_and_only_while_down():
    h = health(breaker_s=300.0, grace_s=30.0)
    fail(h, 0.0)
    assert h.stop_at() == 300.0  # not down yet: the breaker's bound
    fail(h, 0.1)
    fail(h, 0.2)
    assert h.down and h.stop_due() == 30.0
    error = h.stop_error(30.0)
    assert type(error) is EndpointUnreachable and isinstance(error, EndpointUnavailable)
    message = str(error)
    assert "cannot reach endpoint 'p' at http://127.0.0.1:9/v1" in message
    assert "no successful request in 30 s" in message and "is the port in base_url right?" in message

    after = health(breaker_s=300.0, grace_s=30.0)
    succeed(after, 0.0)
    for t in (1.0, 1.1, 1.2):
        fail(after, t)
    assert after.down and after.stop_due() == 301.0 and after.stop_error(100.0) is None


@pytest.mark.parametrize(
    ("outcome", "hint"),
    [
        (Outcome.CONNECTION_ERROR, "Is the server running, and is the port in base_url right?"),
        (Outcome.TIMEOUT, "timeout_s too short?"),
        (Outcome.SERVER_ERROR, "The server answers but fails: check its logs."),
    ],
)
def test_the_setup_error_hint_follows_the_last_error(outcome, hint):
    h = health(grace_s=1.0)
    for _ in range(3):
        h.on_release(outcome, now=0.0, admitted_at=0.0, limit=4, error=f"{outcome.value}: details")
    message = str(h.stop_error(1.0))
    assert hint in message and f"{outcome.value}: details" in message


# ------------------------------------------------------------------ the limit restarts after an outage


def test_limits_restart_at_the_value_and_grow_again():
    aimd = AIMDLimit(initial=40, min_limit=1, max_limit=64, slow_start=True)
    aimd.on_sample(0.0, 0.1, 40, True, epoch=0)  # an overload ends slow start
    assert not aimd.in_slow_start
    aimd.restart(10)
    assert aimd.limit == 10 and aimd.in_slow_start
    aimd.on_sample(1.0, 0.1, 10, False)
    assert aimd.limit > 10  # slow start grows at once
    latency = LatencyLimit(clock=ManualClock(), initial=4, max_limit=64)
    latency.restart(10)
    assert latency.limit == 10
    latency.restart(2)
    assert latency.limit == 10  # never lowered: it keeps what it learnt
    fixed = FixedLimit(7)
    fixed.restart(3)
    assert fixed.limit == 7
    composite = CompositeLimit([AIMDLimit(initial=2, max_limit=64), LatencyLimit(clock=ManualClock(), max_limit=64)])
    composite.restart(12)
    assert composite.limit == 12


# ------------------------------------------------------------------ through the controller, on a manual clock

PROVIDER = ProviderConfig(name="p", base_url="http://user:secret@127.0.0.1:9/v1")


def controller(limit: int = 4, **config) -> tuple[RequestAdmissionController, ManualClock, MemorySink]:
    clock, sink = ManualClock(), MemorySink()
    settings = RequestAdmissionConfig(**config)
    admission = RequestAdmissionController(
        settings, clock=clock, sink=sink, limit_factory=lambda key, bounds: FixedLimit(limit)
    )
    admission.register_model("a", ModelConfig(alias="a", provider="p", model="m"), PROVIDER)
    return admission, clock, sink


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def cleanup(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def take_down(admission: RequestAdmissionController, clock: ManualClock, *, succeed_first: bool = True):
    if succeed_first:
        admission.release(await admission.acquire("a"), Outcome.SUCCESS, rtt_s=0.1)
        clock.advance(1.0)
    leases = [await admission.acquire("a") for _ in range(3)]
    for lease in leases:
        admission.release(lease, REFUSED, rtt_s=0.001, error="connection refused: nobody listens")
    assert admission.down("a")


async def test_down_stops_sending_then_the_probe_timer_lets_one_waiter_out():
    admission, clock, sink = controller(limit=4)
    await take_down(admission, clock)
    down = sink.of(EndpointDown)
    assert len(down) == 1 and down[0].failures == 3 and down[0].url == "http://127.0.0.1:9/v1"
    assert down[0].last_error == "connection refused: nobody listens" and "secret" not in down[0].url
    assert admission.try_acquire("a") is None
    waiters = [asyncio.create_task(admission.acquire("a", retry=True)) for _ in range(5)]
    await settle()
    assert not any(w.done() for w in waiters) and admission.saturated("a")
    clock.advance(0.5)  # the probe is due: the timer wakes exactly one waiter, no polling
    await settle()
    assert sum(w.done() for w in waiters) == 1 and admission.in_flight("a") == 1
    probe = next(w for w in waiters if w.done()).result()
    clock.advance(0.25)
    admission.release(probe, REFUSED, rtt_s=0.25)  # still down: the next probe waits (at least) 0.5 s
    await settle()
    assert sum(w.done() for w in waiters) == 1
    clock.advance(0.4)
    await settle()
    assert sum(w.done() for w in waiters) == 1
    clock.advance(0.1)
    await settle()
    assert sum(w.done() for w in waiters) == 2
    await cleanup(waiters)


async def test_the_probes_success_dispatches_every_waiter_at_once_from_half_the_old_limit():
    clock, sink = ManualClock(), MemorySink()
    admission = RequestAdmissionController(
        RequestAdmissionConfig(),
        clock=clock,
        sink=sink,
        limit_factory=lambda key, bounds: AIMDLimit(initial=16, max_limit=64, slow_start=False),
    )
    admission.register_model("a", ModelConfig(alias="a", provider="p", model="m"), PROVIDER)
    await take_down(admission, clock)
    waiters = [asyncio.create_task(admission.acquire("a", retry=True)) for _ in range(12)]
    await settle()
    clock.advance(0.5)
    await settle()
    probe = next(w for w in waiters if w.done()).result()
    clock.advance(0.1)
    admission.release(probe, Outcome.SUCCESS, rtt_s=0.1)
    await settle()
    up = sink.of(EndpointUp)
    assert len(up) == 1 and up[0].down_for_s == pytest.approx(0.6) and up[0].probes == 1
    assert not admission.down("a")
    assert admission.capacity("a") >= 8  # restarted at 16 // 2, in slow start
    assert any(e.reason == "restart after an outage" for e in sink.of(LimitChanged))
    # The probe, then as many waiters as the restarted limit: admitted by the probe's release, not a timer.
    assert sum(w.done() for w in waiters) == 1 + admission.capacity("a")
    woken = [e for e in sink.of(RequestAdmitted) if e.ts == up[0].ts]
    assert len(woken) == admission.capacity("a")
    await cleanup(waiters)


async def test_the_breaker_timer_stops_the_run_while_a_probe_hangs():
    admission, clock, _ = controller(limit=4, circuit_breaker_s=20.0)
    await take_down(admission, clock)
    waiters = [asyncio.create_task(admission.acquire("a", retry=True)) for _ in range(3)]
    await settle()
    clock.advance(0.5)
    await settle()  # the probe went out and hangs: no failure will arrive before its timeout
    for _ in range(38):  # the first failure was at t=1
        clock.advance(0.5)
        await settle()
    assert not any(w.done() and w.exception() for w in waiters)
    clock.advance(0.5)  # 20 s after the first failure
    await settle()
    failed = [w for w in waiters if w.done() and not w.cancelled() and w.exception() is not None]
    assert len(failed) == 2  # every waiter; the third is the hanging probe
    error = failed[0].exception()
    assert type(error) is EndpointUnavailable and "connection refused: nobody listens" in str(error)
    assert "secret" not in str(error)
    with pytest.raises(EndpointUnavailable):
        await admission.acquire("a")
    await cleanup(waiters)


async def test_a_down_endpoint_that_never_answered_stops_at_the_start_up_grace_with_a_setup_error():
    admission, clock, _ = controller(limit=4, startup_grace_s=5.0)
    await take_down(admission, clock, succeed_first=False)
    waiter = asyncio.create_task(admission.acquire("a", retry=True))
    for _ in range(9):
        clock.advance(0.5)
        await settle()
        if admission.in_flight("a"):  # a probe went out: it fails at once, as refused connections do
            lease = waiter.result() if waiter.done() else None
            if lease is not None:
                admission.release(lease, REFUSED, rtt_s=0.001, error="connection refused: nobody listens")
                waiter = asyncio.create_task(admission.acquire("a", retry=True))
                await settle()
    assert not (waiter.done() and waiter.exception())
    clock.advance(0.5)
    await settle()
    with pytest.raises(EndpointUnreachable, match=r"cannot reach endpoint 'p' at http://127\.0\.0\.1:9/v1"):
        await waiter


async def test_a_down_endpoint_nobody_waits_for_does_not_stop_the_run():
    admission, clock, _ = controller(limit=4, circuit_breaker_s=5.0)
    await take_down(admission, clock)
    clock.advance(10.0)
    await settle()
    assert admission.failure("a") is None  # idle: nothing needs it
