"""Endpoint pools: the routing rule, tier spill and return, failover of queued requests, the pool's fair queue."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from rowloom.concurrency.clock import ManualClock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.admission import FixedLimit, RequestAdmissionController, ResourceKey
from rowloom.models.admission.health import EndpointUnavailable
from rowloom.models.types import Outcome
from rowloom.observe.events.request import RequestAdmitted, RequestQueued
from rowloom.observe.sinks import MemorySink


def pool(limits: dict[str, int], *, fallback: tuple[str, ...] = (), spill_after_s: float = 5.0, sink=None, **config):
    """A controller with one pooled alias `a` over endpoints named by `limits` (fixed limits, a manual clock)."""
    clock = ManualClock()
    controller = RequestAdmissionController(
        RequestAdmissionConfig(**config),
        clock=clock,
        sink=sink,
        limit_factory=lambda key, bounds: FixedLimit(limits[key.provider]),
    )
    alias = ModelConfig(
        alias="a",
        model="m",
        endpoints=[{"provider": p, "tier": "fallback" if p in fallback else "primary"} for p in limits],
        spill_after_s=spill_after_s,
    )
    keys = []
    for member in alias.members():
        provider = ProviderConfig(name=member.model.provider, base_url=f"http://127.0.0.1:9/{member.model.provider}")
        key = controller.register_model("a", member.model, provider, pooled=True)
        keys.append((key, member.tier == "fallback"))
    controller.register_pool("a", keys, spill_after_s=spill_after_s)
    return controller, clock


def gone(name: str) -> EndpointUnavailable:
    return EndpointUnavailable(
        provider=name, model="m", base_url="http://127.0.0.1:9", failing_for_s=300.0, last_error="refused"
    )


def where(leases) -> Counter[str]:
    return Counter(lease.key.provider for lease in leases)


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_new_requests_go_to_the_endpoint_with_most_headroom_so_a_stronger_one_carries_more():
    controller, _ = pool({"small": 2, "big": 4})
    leases = [await controller.acquire("a") for _ in range(3)]
    # 0/2 vs 0/4: a tie (the first); then 1/2 vs 0/4 and 1/2 vs 1/4: the big one
    assert [lease.key.provider for lease in leases] == ["small", "big", "big"]
    leases += [await controller.acquire("a") for _ in range(3)]
    assert where(leases) == {"small": 2, "big": 4}
    assert controller.capacity("a") == 6 and controller.in_flight("a") == 6
    assert controller.try_acquire("a") is None


async def test_equal_headroom_goes_to_the_faster_endpoint():
    controller, _ = pool({"slow": 2, "fast": 2})
    first, second = await controller.acquire("a"), await controller.acquire("a")
    assert {first.key.provider, second.key.provider} == {"slow", "fast"}
    for lease in (first, second):
        controller.release(lease, Outcome.SUCCESS, rtt_s=2.0 if lease.key.provider == "slow" else 0.2)
    assert (await controller.acquire("a")).key.provider == "fast"


async def test_queued_requests_go_to_whichever_endpoint_frees_a_slot_and_record_the_pool_queue():
    sink = MemorySink()
    controller, _ = pool({"x": 1, "y": 1}, sink=sink)
    x, y = await controller.acquire("a"), await controller.acquire("a")
    waiters = [asyncio.ensure_future(controller.acquire("a", group=f"g{i}")) for i in range(2)]
    await settle()
    assert controller.waiting("a") == 2 and controller.saturated("a")
    controller.release(y, Outcome.SUCCESS, rtt_s=0.1)
    first = await waiters[0]
    assert first.key.provider == "y"
    controller.release(x, Outcome.SUCCESS, rtt_s=0.1)
    assert (await waiters[1]).key.provider == "x"
    queued = [e for e in sink.events if isinstance(e, RequestQueued)]
    assert {e.key for e in queued} == {"pool:a"}
    from_queue = [e for e in sink.events if isinstance(e, RequestAdmitted) and e.wait_s >= 0 and e.queue]
    assert [e.queue for e in from_queue] == ["pool:a", "pool:a"]
    assert {e.alias for e in sink.events if isinstance(e, RequestAdmitted)} == {"a"}


async def test_a_fallback_takes_requests_once_the_pool_was_saturated_spill_after_s_and_traffic_then_returns():
    controller, clock = pool({"primary": 1, "fallback": 4}, fallback=("fallback",), spill_after_s=5.0)
    held = await controller.acquire("a")
    assert held.key.provider == "primary"
    first = asyncio.ensure_future(controller.acquire("a"))
    await settle()
    clock.advance(4.0)
    second = asyncio.ensure_future(controller.acquire("a"))  # queued while the pool stays saturated
    await settle()
    clock.advance(0.9)
    await settle()
    assert not first.done() and not second.done()  # the primary is full, but not yet for spill_after_s
    clock.advance(0.2)
    await settle()
    # 5.1 s of saturation: the fallback takes both, the one that waited 1.1 s too
    assert (await first).key.provider == "fallback" and (await second).key.provider == "fallback"
    # The queue emptied, so the saturation ended: new requests go to the primary once it has room, and one
    # queued behind it waits for it, not for the idle fallback.
    controller.release(held, Outcome.SUCCESS, rtt_s=0.1)
    back = await controller.acquire("a")
    assert back.key.provider == "primary"
    later = asyncio.ensure_future(controller.acquire("a"))
    await settle()
    clock.advance(1.0)
    await settle()
    assert not later.done()
    controller.release(back, Outcome.SUCCESS, rtt_s=0.1)
    assert (await later).key.provider == "primary"


async def test_with_a_large_spill_time_the_fallback_carries_nothing():
    controller, clock = pool({"primary": 1, "fallback": 4}, fallback=("fallback",), spill_after_s=3600.0)
    served = []
    lease = await controller.acquire("a")
    for _ in range(5):
        waiter = asyncio.ensure_future(controller.acquire("a"))
        await settle()
        clock.advance(60.0)
        await settle()
        controller.release(lease, Outcome.SUCCESS, rtt_s=0.1)
        lease = await waiter
        served.append(lease)
    assert where(served) == {"primary": 5}


async def test_a_down_primary_sends_everything_to_the_fallback_at_once():
    controller, _ = pool({"primary": 2, "fallback": 2}, fallback=("fallback",), down_after_failures=2)
    for _ in range(2):
        lease = await controller.acquire("a")
        assert lease.key.provider == "primary"
        controller.release(lease, Outcome.CONNECTION_ERROR, rtt_s=0.01)
    assert controller.down(ResourceKey("primary", "m", "chat")) and not controller.down("a")
    lease = await controller.acquire("a")  # no waiting for the spill time: no primary is up
    assert lease.key.provider == "fallback"


async def test_queued_requests_fail_over_when_an_endpoint_goes_down_and_it_rejoins_when_it_answers():
    controller, clock = pool({"x": 1, "y": 1}, down_after_failures=1, probe_backoff_s=1.0)
    x, y = await controller.acquire("a"), await controller.acquire("a")
    waiters = [asyncio.ensure_future(controller.acquire("a")) for _ in range(3)]
    await settle()
    controller.release(x, Outcome.CONNECTION_ERROR, rtt_s=0.01)  # x is down: nothing more goes there for now
    await settle()
    assert not any(w.done() for w in waiters)
    controller.release(y, Outcome.SUCCESS, rtt_s=0.1)
    first = await waiters[0]
    assert first.key.provider == "y"
    clock.advance(1.5)  # x's probe is due: one queued request goes to it
    await settle()
    probe = await waiters[1]
    assert probe.key.provider == "x"
    controller.release(probe, Outcome.SUCCESS, rtt_s=0.1)  # x answered: up again, it takes the next one
    assert (await waiters[2]).key.provider == "x"
    assert not controller.down(ResourceKey("x", "m", "chat"))


async def test_the_pool_fails_only_with_its_last_endpoint():
    controller, _ = pool({"x": 1, "y": 1})
    x, y = await controller.acquire("a"), await controller.acquire("a")
    waiter = asyncio.ensure_future(controller.acquire("a"))
    await settle()
    controller.fail_key(x.key, gone("x"))
    await settle()
    assert not waiter.done() and controller.failure("a") is None
    controller.release(y, Outcome.SUCCESS, rtt_s=0.1)
    assert (await waiter).key.provider == "y"
    later = asyncio.ensure_future(controller.acquire("a"))
    await settle()
    controller.fail_key(y.key, gone("y"))
    with pytest.raises(EndpointUnavailable, match="'y'"):
        await later
    with pytest.raises(EndpointUnavailable):
        await controller.acquire("a")


async def test_a_down_endpoint_of_a_pool_keeps_being_probed_past_its_breaker_while_others_serve():
    controller, clock = pool({"x": 1, "y": 2}, down_after_failures=1, probe_backoff_s=1.0, circuit_breaker_s=10.0)
    leases = [await controller.acquire("a") for _ in range(3)]
    assert where(leases) == {"x": 1, "y": 2}
    x = next(lease for lease in leases if lease.key.provider == "x")
    controller.release(x, Outcome.CONNECTION_ERROR, rtt_s=0.01)
    for _ in range(4):  # probes keep failing for 20 s, twice the breaker
        clock.advance(5.0)
        await settle()
        probe = controller.try_acquire("a")
        if probe is not None:
            controller.release(
                probe, Outcome.CONNECTION_ERROR if probe.key.provider == "x" else Outcome.SUCCESS, rtt_s=0.01
            )
    assert controller.failure(ResourceKey("x", "m", "chat")) is None and controller.failure("a") is None


async def test_the_pool_queue_is_fair_across_columns():
    controller, _ = pool({"x": 1, "y": 1})
    held = [await controller.acquire("a"), await controller.acquire("a")]
    waiters = [asyncio.ensure_future(controller.acquire("a", group="question")) for _ in range(6)]
    waiters += [asyncio.ensure_future(controller.acquire("a", group="answer", weight=2.0)) for _ in range(6)]
    await settle()
    seen: set[int] = set()
    for _ in range(6):  # each release admits exactly one waiter, which then holds its slot
        controller.release(held.pop(0), Outcome.SUCCESS, rtt_s=0.1)
        await settle()
        for lease in (w.result() for w in waiters if w.done()):
            if lease.id not in seen:
                seen.add(lease.id)
                held.append(lease)
    served = Counter(w.result().group for w in waiters if w.done())
    assert served == {"answer": 4, "question": 2}  # shares 2:1, by weight
