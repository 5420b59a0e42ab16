"""Cooldowns: a 429 delays only its own request; the key pauses only when the budget is evidently spent."""

from __future__ import annotations

import asyncio

from rowloom.concurrency.clock import ManualClock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.admission import Cooldown, FixedLimit, RequestAdmissionController
from rowloom.models.types import Outcome, RateLimitInfo
from rowloom.observe.events.request import CooldownEnded, CooldownStarted, RequestRateLimited
from rowloom.observe.sinks import MemorySink

PROVIDER = ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1")


def make(*, limit: int | None = 8, sink=None, **config):
    clock = ManualClock(100.0)
    controller = RequestAdmissionController(
        RequestAdmissionConfig(**config),
        clock=clock,
        sink=sink,
        limit_factory=None if limit is None else (lambda key, bounds: FixedLimit(limit)),
    )
    controller.register_model("a", ModelConfig(alias="a", provider="p", model="m"), PROVIDER)
    return controller, clock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def rejected(controller, lease, retry_after_s=None, rate_limit=None):
    return controller.release(
        lease, Outcome.RATE_LIMITED, rtt_s=0.01, retry_after_s=retry_after_s, rate_limit=rate_limit
    )


async def test_a_single_429_does_not_stall_a_key_whose_other_requests_succeed():
    controller, _ = make(consecutive_429_pause=3)
    unlucky = await controller.acquire("a")
    others = [await controller.acquire("a") for _ in range(3)]
    rejected(controller, unlucky, retry_after_s=30.0)
    assert not controller.saturated("a")
    assert controller.snapshot()["p/m"]["cooldown_until"] is None
    assert controller.try_acquire("a") is not None  # the key keeps admitting
    for lease in others:
        controller.release(lease, Outcome.SUCCESS, rtt_s=0.2)


async def test_repeated_429s_with_no_success_pause_the_key_for_the_retry_after():
    sink = MemorySink()
    controller, clock = make(consecutive_429_pause=3, sink=sink)
    leases = [await controller.acquire("a") for _ in range(3)]
    for lease in leases:
        rejected(controller, lease, retry_after_s=5.0)
    assert controller.saturated("a")
    assert controller.try_acquire("a") is None
    started = sink.of(CooldownStarted)
    assert len(started) == 1 and started[0].until == 105.0 and started[0].duration_s == 5.0
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)  # the cooldown timer, not a poll, admits the waiter
    await settle()
    assert waiter.done()
    assert len(sink.of(CooldownEnded)) == 1
    assert [e.consecutive for e in sink.of(RequestRateLimited)] == [1, 2, 3]


async def test_a_success_between_429s_resets_the_evidence():
    controller, _ = make(consecutive_429_pause=3)
    for outcome in (Outcome.RATE_LIMITED, Outcome.RATE_LIMITED, Outcome.SUCCESS, Outcome.RATE_LIMITED):
        lease = await controller.acquire("a")
        controller.release(lease, outcome, rtt_s=0.01, retry_after_s=5.0)
    assert not controller.saturated("a")


async def test_a_pause_without_retry_after_lasts_the_default_cooldown():
    controller, _ = make(consecutive_429_pause=2, default_cooldown_s=2.0)
    for _ in range(2):
        rejected(controller, await controller.acquire("a"))
    assert controller.snapshot()["p/m"]["cooldown_until"] == 102.0


async def test_429s_from_a_burst_already_answered_by_a_cut_do_not_count_towards_a_pause():
    controller, _ = make(
        limit=None, algorithm="aimd", slow_start=False, default_max_parallel_requests=8, consecutive_429_pause=3
    )
    burst = [await controller.acquire("a") for _ in range(8)]
    for lease in burst:
        rejected(controller, lease, retry_after_s=5.0)
    assert controller.snapshot()["p/m"]["consecutive_429"] == 1
    assert not controller.saturated("a")


async def test_remaining_requests_at_zero_pauses_the_key_until_the_reset():
    sink = MemorySink()
    controller, clock = make(sink=sink)
    lease = await controller.acquire("a")
    spent = RateLimitInfo(remaining_requests=0, reset_requests_s=7.0)  # budget size unknown
    controller.release(lease, Outcome.SUCCESS, rtt_s=0.2, rate_limit=spent)
    assert controller.saturated("a") and controller.try_acquire("a") is None
    assert "rate-limit headers" in sink.of(CooldownStarted)[0].reason
    waiter = asyncio.create_task(controller.acquire("a"))
    clock.advance(6.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    await settle()
    assert waiter.done() and not controller.saturated("a")


async def test_a_spent_budget_of_known_size_is_paced_at_its_refill_rate_instead_of_paused_until_full():
    sink = MemorySink()
    controller, clock = make(sink=sink)
    lease = await controller.acquire("a")
    # 120 requests per minute, all spent: the reset (60 s) is when the budget is *full* again
    spent = RateLimitInfo(limit_requests=120, remaining_requests=0, reset_requests_s=60.0)
    controller.release(lease, Outcome.SUCCESS, rtt_s=0.2, rate_limit=spent)
    assert sink.of(CooldownStarted) == []
    waiters = [asyncio.create_task(controller.acquire("a")) for _ in range(3)]
    await settle()
    assert sum(w.done() for w in waiters) == 0
    admitted = []
    for _ in range(3):
        clock.advance(0.5)  # the budget refills one request every 0.5 s
        await settle()
        admitted.append(sum(w.done() for w in waiters))
    assert admitted == [1, 2, 3]


async def test_remaining_tokens_at_zero_on_a_429_pauses_without_cutting_the_limit():
    controller, _ = make(limit=None, algorithm="aimd", slow_start=False, default_max_parallel_requests=8)
    lease = await controller.acquire("a")
    spent = RateLimitInfo(remaining_tokens=0, reset_tokens_s=3.0)
    rejected(controller, lease, retry_after_s=3.0, rate_limit=spent)
    view = controller.snapshot()["p/m"]
    assert view["cooldown_until"] == 103.0
    assert view["limit"] == 8  # a spent token budget says nothing about concurrency


async def test_headers_with_budget_left_do_not_pause():
    controller, _ = make()
    lease = await controller.acquire("a")
    fine = RateLimitInfo(remaining_requests=10, reset_requests_s=7.0, remaining_tokens=5000)
    controller.release(lease, Outcome.SUCCESS, rtt_s=0.2, rate_limit=fine)
    assert not controller.saturated("a")


def test_the_count_survives_a_pause_so_a_still_spent_budget_pauses_again_at_once():
    cooldown = Cooldown(threshold=2, default_s=2.0, max_s=60.0)
    none = RateLimitInfo()
    assert cooldown.on_rate_limited(0.0, retry_after_s=None, rate_limit=none, counts=True) is None
    pause = cooldown.on_rate_limited(0.0, retry_after_s=None, rate_limit=none, counts=True)
    assert pause is not None and pause.started and pause.until == 2.0
    assert cooldown.expire(2.0) and not cooldown.active(2.0)
    again = cooldown.on_rate_limited(2.5, retry_after_s=1.0, rate_limit=none, counts=True)
    assert again is not None and again.until == 3.5


def test_a_longer_pause_extends_and_a_shorter_one_is_ignored():
    cooldown = Cooldown(threshold=1, default_s=2.0, max_s=60.0)
    none = RateLimitInfo()
    first = cooldown.on_rate_limited(0.0, retry_after_s=5.0, rate_limit=none, counts=True)
    assert first is not None and first.started
    assert cooldown.on_rate_limited(1.0, retry_after_s=1.0, rate_limit=none, counts=True) is None
    longer = cooldown.on_rate_limited(1.0, retry_after_s=10.0, rate_limit=none, counts=True)
    assert longer is not None and not longer.started and cooldown.until == 11.0


def test_retry_after_is_capped():
    cooldown = Cooldown(threshold=1, default_s=2.0, max_s=60.0)
    pause = cooldown.on_rate_limited(0.0, retry_after_s=3600.0, rate_limit=RateLimitInfo(), counts=True)
    assert pause is not None and pause.until == 60.0
