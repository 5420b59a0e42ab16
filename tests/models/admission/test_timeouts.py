"""A timed-out request is overload evidence only when nothing admitted after it was served first.

An overloaded server queues, so a request stuck until its timeout has every later request stuck behind it. When a
later one succeeded while it hung, the timeout was that request's own (hung, or longer than the timeout): the
limit keeps its value, and the endpoint counts a straggler.
"""

from __future__ import annotations

from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.models.types import Outcome
from rowloom.observe.events.request import LimitChanged
from rowloom.observe.sinks import MemorySink

from .test_controller import make

AIMD = RequestAdmissionConfig(algorithm="aimd", slow_start=False, default_max_parallel_requests=8)


async def test_a_timeout_overtaken_by_a_later_success_is_a_straggler_and_cuts_nothing():
    sink = MemorySink()
    controller, clock = make(None, config=AIMD, sink=sink)
    hung = await controller.acquire("a")
    clock.advance(0.1)
    later = await controller.acquire("a")
    clock.advance(0.2)
    controller.release(later, Outcome.SUCCESS, rtt_s=0.2)
    clock.advance(1.7)
    controller.release(hung, Outcome.TIMEOUT, rtt_s=2.0)
    assert controller.capacity("a") == 8
    assert controller.snapshot()["p/m"]["stragglers"] == 1
    assert sink.of(LimitChanged) == []


async def test_a_timeout_nothing_overtook_cuts_the_limit():
    controller, clock = make(None, config=AIMD)
    earlier = await controller.acquire("a")
    clock.advance(0.1)
    stuck = await controller.acquire("a")
    controller.release(earlier, Outcome.SUCCESS, rtt_s=0.3)  # admitted before it: served ahead, as a queue does
    clock.advance(2.0)
    controller.release(stuck, Outcome.TIMEOUT, rtt_s=2.0)
    assert controller.capacity("a") == 6  # 8 * 0.75
    assert controller.snapshot()["p/m"]["stragglers"] == 0


async def test_a_queue_that_times_out_in_order_is_one_overload():
    controller, clock = make(None, config=AIMD)
    queued = []
    for _ in range(8):
        queued.append(await controller.acquire("a"))
        clock.advance(0.01)
    clock.advance(2.0)
    for lease in queued:  # first in, first to time out; none of the later ones got through
        controller.release(lease, Outcome.TIMEOUT, rtt_s=2.0)
    assert controller.capacity("a") == 6
    assert controller.snapshot()["p/m"]["stragglers"] == 0
