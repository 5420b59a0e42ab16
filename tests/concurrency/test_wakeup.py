"""`Wakeup`: one timer on the injected clock; fires at the earliest armed deadline, follows a deadline moved later."""

from __future__ import annotations

import asyncio

from rowloom.concurrency.clock import ManualClock
from rowloom.concurrency.wakeup import Wakeup


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def advance_to(clock: ManualClock, t: float) -> None:
    clock.advance(t - clock.now())
    await settle()


async def test_a_re_arm_with_an_earlier_deadline_fires_at_that_deadline():
    clock = ManualClock()
    wakeup = Wakeup(clock)
    fired: list[float] = []
    wakeup.arm(lambda: 10.0, lambda: fired.append(clock.now()))
    await settle()
    wakeup.arm(lambda: 2.0, lambda: fired.append(clock.now()))  # e.g. the large head waiter was cancelled
    await settle()
    await advance_to(clock, 2.0)
    assert fired == [2.0]
    await advance_to(clock, 10.0)
    assert fired == [2.0]  # replaced, not fired twice: the callback re-arms if it still has something to wait for


async def test_an_earlier_deadline_armed_before_the_pending_timer_first_ran_still_wins():
    clock = ManualClock()
    wakeup = Wakeup(clock)
    fired: list[float] = []
    wakeup.arm(lambda: 10.0, lambda: fired.append(clock.now()))
    wakeup.arm(lambda: 3.0, lambda: fired.append(clock.now()))  # no loop turn in between
    await settle()
    await advance_to(clock, 3.0)
    assert fired == [3.0]


async def test_a_later_deadline_is_left_to_the_pending_timer_which_re_reads_its_own():
    clock = ManualClock()
    wakeup = Wakeup(clock)
    until = {"t": 5.0}
    fired: list[float] = []
    wakeup.arm(lambda: until["t"], lambda: fired.append(clock.now()))
    await settle()
    until["t"] = 8.0  # a cooldown extended: the pending timer follows it
    wakeup.arm(lambda: until["t"], lambda: fired.append(clock.now()))
    await settle()
    await advance_to(clock, 5.0)
    assert fired == []
    await advance_to(clock, 8.0)
    assert fired == [8.0]


async def test_a_deadline_that_moved_earlier_is_honoured_when_re_armed():
    clock = ManualClock()
    wakeup = Wakeup(clock)
    until = {"t": 9.0}
    fired: list[float] = []
    wakeup.arm(lambda: until["t"], lambda: fired.append(clock.now()))
    await settle()
    until["t"] = 4.0  # the same deadline source now says earlier (the pending timer sleeps until 9)
    wakeup.arm(lambda: until["t"], lambda: fired.append(clock.now()))
    await settle()
    await advance_to(clock, 4.0)
    assert fired == [4.0]


async def test_cancel_stops_the_pending_timer():
    clock = ManualClock()
    wakeup = Wakeup(clock)
    fired: list[float] = []
    wakeup.arm(lambda: 1.0, lambda: fired.append(clock.now()))
    await settle()
    wakeup.cancel()
    await advance_to(clock, 2.0)
    assert fired == [] and not wakeup.pending
