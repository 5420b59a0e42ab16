"""rpm/tpm budgets enforced before sending, and aggregate caps shared across aliases and models."""

from __future__ import annotations

import asyncio

import pytest

from rowloom.concurrency.clock import ManualClock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import AggregateCap, RequestAdmissionConfig
from rowloom.models.admission import FixedLimit, RequestAdmissionController, TokenBucket
from rowloom.models.types import Outcome

PROVIDER = ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1")


def controller_for(*models: ModelConfig, limit: int = 16, caps=(), domains=("chat",)):
    clock = ManualClock()
    controller = RequestAdmissionController(
        RequestAdmissionConfig(caps=list(caps)),
        clock=clock,
        limit_factory=lambda key, bounds: FixedLimit(limit),
    )
    for model in models:
        for domain in domains:
            controller.register_model(model.alias, model, PROVIDER, domain=domain)
    return controller, clock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------ rpm / tpm


async def test_rpm_budget_admits_no_faster_than_the_rate():
    controller, clock = controller_for(ModelConfig(alias="a", provider="p", model="m", rpm=60))
    first = controller.try_acquire("a")
    assert first is not None
    waiters = [asyncio.create_task(controller.acquire("a")) for _ in range(4)]
    await settle()
    assert sum(w.done() for w in waiters) == 0  # in flight is far below the limit: the budget holds them
    admitted_per_second = []
    for _ in range(4):
        clock.advance(1.0)
        await settle()
        admitted_per_second.append(sum(w.done() for w in waiters))
    assert admitted_per_second == [1, 2, 3, 4]


async def test_tpm_reservation_is_corrected_by_the_reported_usage():
    controller, _ = controller_for(ModelConfig(alias="a", provider="p", model="m", tpm=600))  # 10 tokens/s
    lease = controller.try_acquire("a", tokens=10)
    assert lease is not None
    assert controller.try_acquire("a", tokens=8) is None
    controller.release(lease, Outcome.SUCCESS, rtt_s=0.1, tokens_used=2)  # estimate was 10, used 2
    assert controller.try_acquire("a", tokens=8) is not None


async def test_a_rejected_request_gets_its_token_reservation_back():
    controller, _ = controller_for(ModelConfig(alias="a", provider="p", model="m", tpm=600))
    lease = controller.try_acquire("a", tokens=10)
    controller.release(lease, Outcome.RATE_LIMITED, rtt_s=0.01)
    assert controller.try_acquire("a", tokens=10) is not None


async def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_instead_of_deadlocking():
    controller, clock = controller_for(ModelConfig(alias="a", provider="p", model="m", tpm=600))
    big = controller.try_acquire("a", tokens=50)  # more than the 10-token bucket: allowed when full
    assert big is not None
    waiter = asyncio.create_task(controller.acquire("a", tokens=5))
    await settle()
    clock.advance(4.4)
    await settle()
    assert not waiter.done()  # the bucket is still paying back the oversized request
    clock.advance(0.2)
    await settle()
    assert waiter.done()


def test_token_bucket_refills_at_its_rate_up_to_its_depth():
    bucket = TokenBucket(120, burst_s=1.0, now=0.0)  # 2 per second, depth 2
    assert bucket.ready(2, 0.0)
    bucket.take(2, 0.0)
    assert not bucket.ready(1, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(0.5)
    assert bucket.ready(1, 0.5)
    assert bucket.ready(2, 100.0) and bucket.level == 2


# ------------------------------------------------------------------ aggregate caps


async def test_aliases_of_one_provider_model_are_bounded_together():
    fast = ModelConfig(alias="fast", provider="p", model="m")
    creative = ModelConfig(alias="creative", provider="p", model="m")
    controller, _ = controller_for(fast, creative, limit=3)
    for alias in ("fast", "creative", "fast"):
        assert controller.try_acquire(alias) is not None
    assert controller.try_acquire("creative") is None and controller.try_acquire("fast") is None
    assert controller.in_flight("fast") == controller.in_flight("creative") == 3


async def test_a_provider_cap_bounds_the_sum_across_its_models_and_a_release_wakes_the_other_model():
    one = ModelConfig(alias="one", provider="p", model="m1")
    two = ModelConfig(alias="two", provider="p", model="m2")
    controller, _ = controller_for(one, two, limit=10, caps=[AggregateCap(provider="p", max_in_flight=3)])
    held = [controller.try_acquire("one"), controller.try_acquire("one"), controller.try_acquire("two")]
    assert all(held)
    assert controller.try_acquire("one") is None and controller.try_acquire("two") is None
    waiter = asyncio.create_task(controller.acquire("two"))
    await settle()
    assert not waiter.done()
    controller.release(held[0], Outcome.SUCCESS, rtt_s=0.1)  # frees room under the shared cap
    await settle()
    assert waiter.done()
    assert controller.in_flight("one") + controller.in_flight("two") == 3


async def test_a_provider_model_cap_spans_its_domains_but_not_other_models():
    chat = ModelConfig(alias="a", provider="p", model="m")
    other = ModelConfig(alias="b", provider="p", model="other")
    controller, _ = controller_for(
        chat,
        other,
        limit=10,
        caps=[AggregateCap(provider="p", model="m", max_in_flight=2)],
        domains=("chat", "embeddings"),
    )
    assert controller.try_acquire("a") is not None
    assert controller.try_acquire("a", domain="embeddings") is not None
    assert controller.try_acquire("a") is None and controller.try_acquire("a", domain="embeddings") is None
    assert controller.try_acquire("b") is not None  # another model is not under this cap


def test_duplicate_caps_are_refused_in_config():
    with pytest.raises(ValueError, match="twice"):
        RequestAdmissionConfig(caps=[AggregateCap(provider="p", max_in_flight=1)] * 2)


async def test_cancelling_a_large_head_waiter_moves_the_budget_wakeup_earlier():
    controller, clock = controller_for(ModelConfig(alias="a", provider="p", model="m", tpm=600))  # 10 tokens/s
    assert controller.try_acquire("a", tokens=10) is not None  # the bucket is empty
    large = asyncio.create_task(controller.acquire("a", tokens=10))  # the head: a full bucket, 1 s away
    small = asyncio.create_task(controller.acquire("a", tokens=1))  # behind it: 0.1 s away
    await settle()
    large.cancel()
    await settle()
    clock.advance(0.15)
    await settle()
    assert small.done()  # before: the timer armed for the large head slept on until 1 s
