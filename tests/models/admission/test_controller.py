"""Request admission controller: leases, waiters, wake-up, deadlines, cancellation, release semantics, fairness."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter

import pytest

from rowloom.concurrency.clock import ManualClock, MonotonicClock
from rowloom.concurrency.leases import ReleaseStatus
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError
from rowloom.models.admission import (
    AdmissionTimeout,
    FixedLimit,
    RequestAdmissionController,
)
from rowloom.models.types import Outcome
from rowloom.observe.events.request import (
    LimitChanged,
    ReleaseRejected,
    RequestAdmitted,
    RequestCompleted,
    RequestQueued,
)
from rowloom.observe.sinks import MemorySink

PROVIDER = ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1")


def model(alias: str = "a", *, model_id: str = "m", **kwargs) -> ModelConfig:
    return ModelConfig(alias=alias, provider="p", model=model_id, **kwargs)


def make(limit: int | None = 2, *, config=None, clock=None, sink=None, aliases=("a",), **model_kwargs):
    clock = clock or ManualClock()
    controller = RequestAdmissionController(
        config or RequestAdmissionConfig(),
        clock=clock,
        sink=sink,
        limit_factory=None if limit is None else (lambda key, bounds: FixedLimit(limit)),
    )
    for alias in aliases:
        controller.register_model(alias, model(alias, **model_kwargs), PROVIDER)
    return controller, clock


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def ok(controller: RequestAdmissionController, lease) -> ReleaseStatus:
    return controller.release(lease, Outcome.SUCCESS, rtt_s=0.1)


# ------------------------------------------------------------------ admission and waiting


async def test_admits_up_to_the_limit_then_queues_waiters():
    controller, _ = make(2)
    first = await controller.acquire("a")
    await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    assert not waiter.done()
    assert controller.waiting("a") == 1 and controller.saturated("a")
    assert ok(controller, first) is ReleaseStatus.RELEASED
    third = await waiter
    assert third.key == first.key and controller.in_flight("a") == 2
    assert not controller.saturated("a")


async def test_a_release_wakes_the_waiter_itself_on_the_next_loop_turn():
    controller, clock = make(1)  # a manual clock that never moves: no timer or polling loop could admit anyone
    for _ in range(3):
        holder = await controller.acquire("a")
        waiter = asyncio.create_task(controller.acquire("a"))
        await settle()
        assert controller.waiting("a") == 1 and not waiter.done()
        ok(controller, holder)
        # the release hands the slot over itself: the queue is empty and the key still full before the waiter runs
        assert controller.waiting("a") == 0 and controller.in_flight("a") == 1
        await asyncio.sleep(0)  # one turn of the loop resumes the waiter with its lease
        assert waiter.done()
        assert ok(controller, waiter.result()) is ReleaseStatus.RELEASED
    assert clock.now() == 0.0 and controller.in_flight("a") == 0


async def test_try_acquire_never_waits_and_does_not_jump_the_queue():
    controller, _ = make(1)
    holder = controller.try_acquire("a")
    assert holder is not None
    assert controller.try_acquire("a") is None
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    ok(controller, holder)
    assert controller.try_acquire("a") is None  # the freed slot went to the queued waiter
    ok(controller, await waiter)
    assert controller.try_acquire("a") is not None


async def test_deadline_raises_a_clear_timeout_and_leaves_no_trace():
    controller, clock = make(1)
    holder = await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a", deadline=clock.now() + 5.0))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not waiter.done()
    clock.advance(0.1)
    await settle()
    with pytest.raises(AdmissionTimeout, match=r"no request slot for model alias 'a' \(p/m\)"):
        await waiter
    assert controller.waiting("a") == 0 and controller.in_flight("a") == 1
    ok(controller, holder)
    assert controller.in_flight("a") == 0


async def test_a_deadline_already_passed_fails_at_once_when_no_slot_is_free():
    controller, clock = make(1)
    await controller.acquire("a")
    with pytest.raises(AdmissionTimeout):
        await controller.acquire("a", deadline=clock.now())
    assert controller.waiting("a") == 0


async def test_a_waiter_admitted_before_its_deadline_is_not_timed_out_later():
    controller, clock = make(1)
    holder = await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a", deadline=clock.now() + 5.0))
    await settle()
    ok(controller, holder)
    lease = await waiter
    clock.advance(10.0)
    await settle()
    assert controller.in_flight("a") == 1
    assert ok(controller, lease) is ReleaseStatus.RELEASED


# ------------------------------------------------------------------ cancellation races


async def test_a_waiter_cancelled_before_assignment_leaves_the_queue():
    controller, _ = make(1)
    holder = await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert controller.waiting("a") == 0
    ok(controller, holder)
    assert controller.in_flight("a") == 0  # nobody was handed the freed slot


async def test_a_waiter_cancelled_after_its_lease_was_assigned_gives_the_lease_back():
    controller, _ = make(1)
    holder = await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    ok(controller, holder)  # assigns the slot to the waiter's future; the waiter has not resumed yet
    assert controller.in_flight("a") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert controller.in_flight("a") == 0
    assert controller.try_acquire("a") is not None  # the capacity is intact


async def test_cancelling_one_of_several_waiters_keeps_the_others_in_fair_order():
    controller, _ = make(1)
    holder = await controller.acquire("a")
    tasks = [asyncio.create_task(controller.acquire("a", group=f"g{i}")) for i in range(3)]
    await settle()
    tasks[0].cancel()
    await settle()
    ok(controller, holder)
    lease = await tasks[1]
    assert lease.group == "g1" and not tasks[2].done()
    ok(controller, lease)
    ok(controller, await tasks[2])
    assert controller.in_flight("a") == 0


# ------------------------------------------------------------------ release semantics


async def test_duplicate_release_does_not_double_credit():
    controller, _ = make(1)
    lease = await controller.acquire("a")
    assert ok(controller, lease) is ReleaseStatus.RELEASED
    assert ok(controller, lease) is ReleaseStatus.DUPLICATE
    assert controller.in_flight("a") == 0
    assert controller.try_acquire("a") is not None
    assert controller.try_acquire("a") is None  # still exactly one slot
    assert lease.id in controller.recently_released()


async def test_unknown_release_changes_nothing():
    controller, _ = make(1)
    lease = await controller.acquire("a")
    forged = dataclasses.replace(lease, id=999_999)
    assert ok(controller, forged) is ReleaseStatus.UNKNOWN
    assert controller.in_flight("a") == 1
    assert ok(controller, lease) is ReleaseStatus.RELEASED


async def test_stale_release_from_an_older_generation_changes_nothing():
    controller, _ = make(1)
    old = await controller.acquire("a")
    generation = controller.generation
    controller.reset()
    assert controller.generation > generation
    fresh = await controller.acquire("a")
    assert ok(controller, old) is ReleaseStatus.STALE
    assert controller.in_flight("a") == 1
    assert ok(controller, fresh) is ReleaseStatus.RELEASED


async def test_rejected_releases_are_reported_as_events():
    sink = MemorySink()
    controller, _ = make(1, sink=sink)
    lease = await controller.acquire("a")
    ok(controller, lease)
    ok(controller, lease)
    ok(controller, dataclasses.replace(lease, id=424242))
    statuses = [e.status for e in sink.of(ReleaseRejected)]
    assert statuses == ["duplicate", "unknown"]
    assert [e.outcome for e in sink.of(RequestCompleted)] == ["success"]


async def test_in_flight_never_goes_negative_under_a_storm_of_releases():
    controller, _ = make(3)
    rng = random.Random(7)
    held, released = [], []
    for _ in range(500):
        action = rng.random()
        if action < 0.4:
            lease = controller.try_acquire("a")
            if lease is not None:
                held.append(lease)
        elif action < 0.7 and held:
            lease = held.pop(rng.randrange(len(held)))
            assert controller.release(lease, rng.choice(list(Outcome)), rtt_s=0.01) is ReleaseStatus.RELEASED
            released.append(lease)
        elif released:
            assert ok(controller, rng.choice(released)) is ReleaseStatus.DUPLICATE
        assert controller.in_flight("a") == len(held)
        assert controller.in_flight("a") <= 3


# ------------------------------------------------------------------ blocking acquire


async def test_blocking_acquire_on_a_running_loop_raises_a_clear_error():
    controller, _ = make(1)
    with pytest.raises(RowloomError, match=r"running|event loop") as info:
        controller.acquire_blocking("a")
    assert "await" in str(info.value)
    assert controller.in_flight("a") == 0


async def test_blocking_acquire_from_a_worker_thread_waits_for_the_loop_to_free_a_slot():
    queued = asyncio.Event()

    class QueuedSignal(MemorySink):
        def emit(self, event) -> None:
            super().emit(event)
            if isinstance(event, RequestQueued):
                queued.set()

    controller, _ = make(1, clock=MonotonicClock(), sink=QueuedSignal())
    holder = await controller.acquire("a")
    pending = asyncio.ensure_future(asyncio.to_thread(controller.acquire_blocking, "a"))
    await queued.wait()  # the worker thread's request now waits in the loop's queue
    assert controller.waiting("a") == 1 and not pending.done()
    ok(controller, holder)
    lease = await pending
    assert controller.in_flight("a") == 1
    status = await asyncio.to_thread(controller.release, lease, Outcome.SUCCESS, rtt_s=0.1)
    assert status is ReleaseStatus.RELEASED and controller.in_flight("a") == 0


async def test_an_interrupted_blocking_acquire_gives_back_a_lease_that_arrived_exactly_once(monkeypatch):
    sink = MemorySink()
    controller, _ = make(1, clock=MonotonicClock(), sink=sink)
    ok(controller, await controller.acquire("a"))  # binds the controller to this loop
    real = asyncio.run_coroutine_threadsafe
    calls = []

    class InterruptedAfterDelivery:
        """The lease is delivered, then Ctrl-C lands before the caller could take it."""

        def __init__(self, pending):
            self.pending = pending

        def result(self):
            self.pending.result()
            raise KeyboardInterrupt

        def cancel(self):
            return self.pending.cancel()

    def interrupt_first(coro, loop):
        calls.append(coro)
        pending = real(coro, loop)
        return InterruptedAfterDelivery(pending) if len(calls) == 1 else pending

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", interrupt_first)
    interrupted = []

    def sync_caller():
        try:
            controller.acquire_blocking("a")
        except KeyboardInterrupt:
            interrupted.append(True)

    await asyncio.to_thread(sync_caller)
    assert interrupted == [True]
    assert controller.in_flight("a") == 0
    assert [e.outcome for e in sink.of(RequestCompleted)] == ["success", "cancelled"]
    assert sink.of(ReleaseRejected) == []  # given back once, not twice


def test_blocking_acquire_without_an_event_loop_takes_a_free_slot_or_says_why_not():
    controller, _ = make(1)
    lease = controller.acquire_blocking("a")
    with pytest.raises(AdmissionTimeout, match="no event loop"):
        controller.acquire_blocking("a")
    assert ok(controller, lease) is ReleaseStatus.RELEASED


# ------------------------------------------------------------------ fairness


async def test_waiters_share_freed_slots_by_group_weight():
    controller, _ = make(1)
    holder = await controller.acquire("a")
    admitted: list = []

    async def wait(group: str, weight: float) -> None:
        admitted.append(await controller.acquire("a", group=group, weight=weight))

    tasks = []
    for _ in range(40):
        tasks.append(asyncio.create_task(wait("heavy", 3.0)))
        tasks.append(asyncio.create_task(wait("light", 1.0)))
    await settle()
    ok(controller, holder)
    for _ in range(39):
        await settle()
        ok(controller, admitted[-1])
    await settle()
    shares = Counter(lease.group for lease in admitted[:40])
    assert shares == {"heavy": 30, "light": 10}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert controller.waiting("a") == 0


# ------------------------------------------------------------------ keys, aliases, observability


async def test_aliases_of_one_provider_model_share_one_state():
    controller, _ = make(2, aliases=("fast", "creative"))
    assert controller.key_for("fast") == controller.key_for("creative")
    await controller.acquire("fast")
    await controller.acquire("creative")
    assert controller.try_acquire("fast") is None
    snapshot = controller.snapshot()
    assert list(snapshot) == ["p/m"]
    assert snapshot["p/m"]["aliases"] == ["creative", "fast"] and snapshot["p/m"]["in_flight"] == 2


async def test_an_alias_ceiling_bounds_its_own_share_of_a_shared_key():
    controller, _ = make(4, aliases=())
    controller.register_model("small", model("small", max_parallel_requests=1), PROVIDER)
    controller.register_model("big", model("big"), PROVIDER)
    await controller.acquire("small")
    assert controller.try_acquire("small") is None
    assert controller.capacity("small") == 1 and controller.capacity("big") == 4
    small_waiter = asyncio.create_task(controller.acquire("small"))
    await settle()
    big = await controller.acquire("big")  # not stuck behind the small alias's waiter
    assert not small_waiter.done()
    ok(controller, big)
    small_waiter.cancel()
    await asyncio.gather(small_waiter, return_exceptions=True)


async def test_waiters_are_judged_alias_by_alias_only_once_an_aliass_ceiling_can_bind():
    controller, _ = make(4, aliases=())
    controller.register_model("big", model("big"), PROVIDER)
    state, _ = controller._registry.resolve("big", "chat")
    assert not state.alias_bound  # its ceiling is the limit's most: the key's room is the alias's
    controller.register_model("small", model("small", max_parallel_requests=1), PROVIDER)
    assert state.alias_bound  # one below it: a waiter of "small" may wait while "big"'s are served


async def test_registering_an_alias_for_another_provider_than_its_model_names_is_refused():
    controller, _ = make(1)
    other = ProviderConfig(name="other", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(RowloomError, match="names provider 'p'"):
        controller.register_model("x", model("x"), other)
    with pytest.raises(RowloomError, match="not registered"):
        await controller.acquire("nope")


async def test_snapshot_reports_limit_in_flight_peak_waiters_and_cooldown():
    controller, _ = make(2)
    lease = await controller.acquire("a")
    await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    ok(controller, lease)
    await waiter
    view = controller.snapshot()["p/m"]
    assert view["limit"] == 2 and view["in_flight"] == 2 and view["peak_in_flight"] == 2
    assert view["waiters"] == 0 and view["cooldown_until"] is None and view["rate_limited"] == 0
    assert {"min_limit", "max_limit", "observed_max_limit"} <= set(view)


async def test_queueing_and_admission_are_recorded_as_events_with_the_wait():
    sink = MemorySink()
    controller, clock = make(1, sink=sink)
    holder = await controller.acquire("a", group="col")
    waiter = asyncio.create_task(controller.acquire("a", group="col"))
    await settle()
    clock.advance(2.5)
    ok(controller, holder)
    await waiter
    queued = sink.of(RequestQueued)
    admitted = sink.of(RequestAdmitted)
    assert len(queued) == 1 and queued[0].group == "col"
    assert [e.wait_s for e in admitted] == [0.0, 2.5]
    assert all(e.ts == clock.now() or e.ts == 0.0 for e in admitted)
    for event in sink.events:
        assert event.to_dict()["kind"]


async def test_slow_start_through_the_controller_emits_limit_changes():
    sink = MemorySink()
    config = RequestAdmissionConfig(
        algorithm="aimd", initial_limit=2, slow_start_step=1.0, default_max_parallel_requests=8
    )
    controller, _ = make(None, config=config, sink=sink)
    assert controller.capacity("a") == 2
    held = []
    for _ in range(10):  # keep the key fully used: every release is followed by refilling it
        while (lease := controller.try_acquire("a")) is not None:
            held.append(lease)
        ok(controller, held.pop(0))
    assert controller.capacity("a") == 8
    changes = [(e.old, e.new) for e in sink.of(LimitChanged)]
    assert changes[0] == (2, 3) and changes[-1][1] == 8
    assert controller.snapshot()["p/m"]["observed_max_limit"] == 8


async def test_a_burst_of_429s_admitted_under_one_limit_cuts_it_once():
    config = RequestAdmissionConfig(algorithm="aimd", slow_start=False, default_max_parallel_requests=8)
    controller, _ = make(None, config=config)
    leases = [await controller.acquire("a") for _ in range(8)]
    for lease in leases:
        controller.release(lease, Outcome.RATE_LIMITED, rtt_s=0.01, retry_after_s=1.0)
    assert controller.capacity("a") == 6  # 8 * 0.75, once
    assert controller.snapshot()["p/m"]["rate_limited"] == 8
    assert not controller.saturated("a")  # one congestion event, not a spent budget: no pause


async def test_fail_key_fails_waiters_and_every_later_acquire():
    controller, _ = make(1)
    await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    boom = RowloomError("endpoint is gone")
    controller.fail_key("a", boom)
    with pytest.raises(RowloomError, match="endpoint is gone"):
        await waiter
    with pytest.raises(RowloomError, match="endpoint is gone"):
        await controller.acquire("a")
    controller.reset()
    assert await controller.acquire("a")


async def test_a_queued_request_is_admitted_under_its_own_correlation_ids():
    from rowloom.observe.context import correlate
    from rowloom.observe.events.request import RequestAdmitted as Admitted

    sink = MemorySink()
    controller, _ = make(1, sink=sink)
    with correlate(task="first"):
        held = await controller.acquire("a")

    async def second():
        with correlate(task="second"):
            return await controller.acquire("a")

    waiting = asyncio.ensure_future(second())
    await asyncio.sleep(0)
    with correlate(task="first"):  # the release that frees the slot runs in the first request's context
        controller.release(held, Outcome.SUCCESS, rtt_s=0.01)
    controller.release(await waiting, Outcome.SUCCESS, rtt_s=0.01)
    assert [e.task for e in sink.of(Admitted)] == ["first", "second"]


async def test_a_retry_waits_ahead_of_first_attempts_of_its_group():
    controller, _ = make(1)
    held = await controller.acquire("a", group="g")
    first = asyncio.ensure_future(controller.acquire("a", group="g"))
    await asyncio.sleep(0)
    retry = asyncio.ensure_future(controller.acquire("a", group="g", retry=True))
    await asyncio.sleep(0)
    controller.release(held, Outcome.SUCCESS, rtt_s=0.01)
    await asyncio.sleep(0)
    assert retry.done() and not first.done()
    controller.release(retry.result(), Outcome.SUCCESS, rtt_s=0.01)
    controller.release(await first, Outcome.SUCCESS, rtt_s=0.01)


# ------------------------------------------------------------------ a failing event sink


class FailingSink:
    """Records events until `failing` is set, then raises on every emit."""

    def __init__(self, *, failing: bool = False):
        self.failing = failing
        self.events: list = []

    def emit(self, event) -> None:
        if self.failing:
            raise RuntimeError("sink down")
        self.events.append(event)

    def close(self) -> None:
        return None


async def test_a_sink_that_raises_on_admission_leaks_no_lease():
    controller, _ = make(1, sink=FailingSink(failing=True))
    lease = await controller.acquire("a")  # before: the lease was issued, then the event raised out of acquire
    assert controller.in_flight("a") == 1
    assert ok(controller, lease) is ReleaseStatus.RELEASED
    assert controller.in_flight("a") == 0
    assert controller.try_acquire("a") is not None  # admission still works


async def test_a_sink_that_raises_while_a_release_wakes_a_waiter_leaves_no_future_unresolved():
    sink = FailingSink()
    controller, _ = make(1, sink=sink)
    held = await controller.acquire("a")
    waiter = asyncio.create_task(controller.acquire("a"))
    await settle()
    sink.failing = True
    assert ok(controller, held) is ReleaseStatus.RELEASED  # before: raised, the waiter never woken
    await settle()
    assert waiter.done() and controller.in_flight("a") == 1
    assert ok(controller, waiter.result()) is ReleaseStatus.RELEASED and controller.in_flight("a") == 0


async def test_a_failing_sink_is_logged_once_with_its_traceback(caplog):
    controller, _ = make(2, sink=FailingSink(failing=True))
    with caplog.at_level("ERROR", logger="rowloom.observe"):
        for _ in range(3):
            ok(controller, await controller.acquire("a"))
    failures = [r for r in caplog.records if "FailingSink" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "sink down" in caplog.text


def test_a_local_server_rowloom_runs_starts_at_its_slots_and_never_goes_below_them():
    controller = RequestAdmissionController(RequestAdmissionConfig(), clock=ManualClock())
    local = ProviderConfig(name="p", type="local", parallel_slots=4)
    controller.register_model("a", model("a", max_parallel_requests=16), local)
    snapshot = controller.snapshot()["p/m"]
    assert snapshot["limit"] == 4 and snapshot["min_limit"] == 4 and snapshot["max_limit"] == 16
    remote = RequestAdmissionController(RequestAdmissionConfig(), clock=ManualClock())
    remote.register_model("a", model("a", max_parallel_requests=64), PROVIDER)
    assert remote.snapshot()["p/m"]["limit"] == 16 and remote.snapshot()["p/m"]["min_limit"] == 1
