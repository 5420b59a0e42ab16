"""The adaptive row-group frontier widens while model capacity idles and narrows under pressure or memory."""

from __future__ import annotations

import asyncio

from rowloom.concurrency.clock import ManualClock
from rowloom.engine.scheduling.frontier import Frontier, FrontierSignals


def signals(**kw) -> FrontierSignals:
    base = {"starved": False, "paused": False, "queued_demand": 0, "model_slots": 32, "admitted_rows": 100}
    base.update(kw)
    return FrontierSignals(**base)


def frontier(**kw) -> tuple[Frontier, ManualClock]:
    clock = ManualClock()
    args = {"initial": 2, "hard_cap": 4, "max_admitted_rows": 1000, "clock": clock, "pressure_window_s": 2.0}
    args.update(kw)
    return Frontier(**args), clock


def test_widens_while_model_capacity_idles_with_little_queued_demand_up_to_the_hard_cap():
    f, _ = frontier()
    assert f.update(signals(starved=True, queued_demand=2)) == (2, 3, "model capacity idle with little queued demand")
    f.update(signals(starved=True))
    assert f.target == 4
    assert f.update(signals(starved=True)) is None  # never past the hard cap
    assert f.limited_by == "hard_cap"


def test_does_not_widen_while_demand_is_queued_or_capacity_is_busy():
    f, _ = frontier()
    assert f.update(signals(starved=True, queued_demand=20)) is None
    assert f.update(signals(starved=False)) is None
    assert f.target == 2


def test_narrows_after_sustained_pressure_one_step_per_window():
    f, clock = frontier(initial=4)
    assert f.update(signals(paused=True, queued_demand=10)) is None  # pressure just began
    clock.advance(1.0)
    assert f.update(signals(paused=True, queued_demand=10)) is None
    clock.advance(1.0)
    assert f.update(signals(paused=True, queued_demand=10)) == (4, 3, "sustained request pressure")
    clock.advance(0.5)
    assert f.update(signals(paused=True, queued_demand=10)) is None  # next step needs another window
    clock.advance(1.5)
    assert f.update(signals(paused=True, queued_demand=10)) == (3, 2, "sustained request pressure")


def test_pressure_that_lets_up_resets_the_window():
    f, clock = frontier(initial=4)
    f.update(signals(paused=True, queued_demand=10))
    clock.advance(1.9)
    f.update(signals(paused=False))
    clock.advance(0.2)
    assert f.update(signals(paused=True, queued_demand=10)) is None


def test_narrows_when_admitted_rows_pass_the_memory_bound_and_refuses_new_row_groups():
    f, _ = frontier(initial=3, max_admitted_rows=250)
    assert f.update(signals(admitted_rows=300)) == (3, 2, "admitted rows above max_admitted_rows")
    assert f.may_admit(in_flight=1, admitted_rows=200, next_rows=100) == (False, "memory_bound")
    assert f.may_admit(in_flight=0, admitted_rows=0, next_rows=1000) == (True, "")  # never stall empty


def test_may_admit_reports_the_limit_that_binds():
    f, _ = frontier(initial=2, hard_cap=2)
    assert f.may_admit(in_flight=2, admitted_rows=0, next_rows=10) == (False, "hard_cap")
    g, _ = frontier(initial=2, hard_cap=4)
    assert g.may_admit(in_flight=2, admitted_rows=0, next_rows=10) == (False, "frontier_target")
    assert g.may_admit(in_flight=1, admitted_rows=0, next_rows=10) == (True, "")


class _Endpoints:
    """An endpoint view whose model is idle, and down or not."""

    def __init__(self, down: bool):
        self.is_down = down

    def capacity(self, alias: str) -> int:
        return 4

    def saturated(self, alias: str) -> bool:
        return False

    def cooling(self, alias: str) -> bool:
        return False

    def down(self, alias: str) -> bool:
        return self.is_down

    def backing_off(self, alias: str) -> int:
        return 0


class _Blocked:
    async def cell(self, row):
        await asyncio.Event().wait()


async def test_the_scheduler_does_not_widen_the_frontier_while_an_endpoint_is_down():
    from rowloom.config import DatasetConfig
    from rowloom.engine.plan import build_plan
    from rowloom.engine.scheduler import Scheduler

    config = DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
            "models": [{"alias": "a", "provider": "p", "model": "m"}],
            "columns": [{"name": "q", "type": "llm_text", "model": "a", "prompt": "x"}],
            "run": {"row_group_size": 10, "initial_row_groups_in_flight": 1, "max_row_groups_in_flight": 8},
        }
    )
    plan = build_plan(config, 100)
    targets = {}
    for down in (False, True):
        scheduler = Scheduler(
            config=config,
            plan=plan,
            generators={"q": _Blocked()},  # type: ignore[dict-item]
            checkpointer=None,  # type: ignore[arg-type]
            endpoints=_Endpoints(down),
            seed=1,
            clock=ManualClock(),
        )
        scheduler._adapt_frontier()  # model slots free, no ready work, row groups pending: starved
        targets[down] = scheduler.frontier.target
        for task in scheduler._running:
            task.cancel()
        await asyncio.gather(*scheduler._running, return_exceptions=True)
    assert targets == {False: 2, True: 1}
