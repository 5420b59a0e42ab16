"""A worker's grants without Ray: every change of the usable share wakes the requests queued on it, and a
failing event buffer breaks neither admission nor a grant change."""

from __future__ import annotations

import asyncio

from rowloom.concurrency.clock import ManualClock
from rowloom.config import DatasetConfig
from rowloom.engine.distributed.grants import FALLBACK_SHARE, Grant, GrantLimit, GrantRenewer, Report
from rowloom.engine.distributed.worker import WorkerEngine
from rowloom.engine.output_location import OutputLocation
from rowloom.models.types import Outcome

CONFIG = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
    "models": [{"alias": "a", "provider": "p", "model": "m"}],
    "columns": [{"name": "t", "type": "llm_text", "model": "a", "prompt": "x"}],
}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Authority:
    """Grants `share` until it becomes unreachable; counts the renewals it saw."""

    def __init__(self, share: int, *, ttl_s: float = 1.0):
        self.share, self.ttl_s = share, ttl_s
        self.reachable = True
        self.renewals = 0

    async def renew(self, label: str, report: Report) -> Grant:
        self.renewals += 1
        if not self.reachable:
            raise ConnectionError("authority gone")
        return Grant(share=self.share, ttl_s=self.ttl_s, epoch=0, limit=8)


def worker(tmp_path, authority: Authority, clock: ManualClock) -> WorkerEngine:
    config = DatasetConfig.from_dict(CONFIG)
    return WorkerEngine(
        "w0",
        "job",
        config,
        10,
        OutputLocation(tmp_path / "out"),
        1,
        authority.renew,
        lambda delivery: None,
        renew_interval_s=0.25,
        clock=clock,
    )


async def advance_to(clock: ManualClock, t: float, step: float = 0.25) -> None:
    while clock.now() < t:
        clock.advance(min(step, t - clock.now()))
        await settle()


async def test_a_queued_request_is_admitted_when_a_zero_grant_lapses_to_the_fallback_share(tmp_path):
    # The tail of a run: the other worker holds the whole limit (this one's share is 0), then the authority
    # goes away. At the grant's expiry this worker may send FALLBACK_SHARE requests: its queued one must go.
    clock = ManualClock()
    authority = Authority(share=0)
    engine = worker(tmp_path, authority, clock)
    engine.renewer.start()
    await settle()
    waiter = asyncio.create_task(engine.runtime.admission.acquire("a"))
    await settle()
    assert not waiter.done()  # share 0
    authority.reachable = False
    await advance_to(clock, 1.0)  # every renewal since has failed; the grant lapses now
    try:
        assert authority.renewals > 1
        assert waiter.done()  # before: nobody re-dispatched, and nothing in flight would ever release
        assert engine.runtime.admission.capacity("a") == FALLBACK_SHARE
    finally:
        await engine.renewer.stop()
    engine.runtime.admission.release(waiter.result(), Outcome.SUCCESS, rtt_s=0.1)


async def test_a_grant_that_lapses_between_renewals_is_reported_at_its_expiry():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    authority = Authority(share=0)
    changes: list[tuple[str, int, int]] = []
    renewer = GrantRenewer(
        "w0", {"k": limit}, authority.renew, lambda k: 4, lambda k: 0, lambda *c: changes.append(c), clock=clock
    )
    await renewer.renew_once()  # a zero share until 1.0; no further renewal runs in this test
    assert changes == []
    clock.advance(0.5)
    await settle()
    assert changes == []
    clock.advance(0.5)
    await settle()
    assert changes == [("k", 0, FALLBACK_SHARE)]  # before: the lapse changed the limit silently
    await renewer.stop()


async def test_a_failed_renewal_reports_a_grant_that_lapsed_meanwhile():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    limit.apply(Grant(share=8, ttl_s=1.0, epoch=0, limit=8))  # taken before this renewer watched it
    authority = Authority(share=8)
    authority.reachable = False
    changes: list[tuple[str, int, int]] = []
    renewer = GrantRenewer(
        "w0", {"k": limit}, authority.renew, lambda k: 4, lambda k: 0, lambda *c: changes.append(c), clock=clock
    )
    clock.advance(2.0)
    await renewer.renew_once()
    assert renewer.failures == 1
    assert changes == [("k", 8, FALLBACK_SHARE)]  # before: a failed renewal told nobody


async def test_a_renewal_that_restores_a_locally_cut_share_wakes_the_queue():
    clock = ManualClock()
    limit = GrantLimit(ceiling=64, clock=clock)
    authority = Authority(share=8)
    changes: list[tuple[str, int, int]] = []
    renewer = GrantRenewer(
        "w0", {"k": limit}, authority.renew, lambda k: 8, lambda k: 0, lambda *c: changes.append(c), clock=clock
    )
    await renewer.renew_once()
    limit.on_sample(clock.now(), 0.01, 8, True, epoch=0)  # an overload cuts the share locally, to 6
    assert limit.limit == 6
    await renewer.renew_once()  # the authority gives the 8 back: room for 2 more queued requests
    assert changes[0] == ("k", 0, 8) and changes[-1] == ("k", 6, 8)
    await renewer.stop()


async def test_a_failing_event_buffer_breaks_neither_admission_nor_a_grant_change(tmp_path, monkeypatch):
    clock = ManualClock()
    engine = worker(tmp_path, Authority(share=0), clock)
    admission = engine.runtime.admission
    waiter = asyncio.create_task(admission.acquire("a"))
    await settle()

    def broken(event) -> None:
        raise RuntimeError("buffer broken")

    monkeypatch.setattr(engine.sink, "emit", broken)
    (label,) = engine.runtime.grants
    engine.runtime.grants[label].apply(Grant(share=2, ttl_s=10.0, epoch=0, limit=2))
    engine.runtime.grant_changed(label, 0, 2)  # before: raised out of the bare buffer, the waiter slept on
    await settle()
    assert waiter.done()
    admission.release(waiter.result(), Outcome.SUCCESS, rtt_s=0.1)
    assert admission.in_flight("a") == 0
