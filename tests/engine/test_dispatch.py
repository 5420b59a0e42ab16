"""The scheduler's dispatch: a lease is judged on the view eligibility saw, and a refusal skips only its group."""

from __future__ import annotations

import asyncio

from rowloom.concurrency.clock import ManualClock
from rowloom.config import DatasetConfig
from rowloom.engine.completion import RowGroupState, Task
from rowloom.engine.plan import build_plan
from rowloom.engine.scheduler import Scheduler, model_pool
from rowloom.observe.events.scheduler import TaskBlocked
from rowloom.observe.sinks import MemorySink


class Endpoints:
    """Request limit 3 on every model: 2 * 3 + 2 = 8 task slots per model pool."""

    def capacity(self, alias: str) -> int:
        return 3

    def saturated(self, alias: str) -> bool:
        return False

    def cooling(self, alias: str) -> bool:
        return False

    def backing_off(self, alias: str) -> int:
        return 0


class Blocked:
    """A generator whose cells never finish on their own: dispatched tasks stay running while a test looks."""

    async def cell(self, row):
        await asyncio.Event().wait()


def llm(name: str, alias: str, weight: float) -> dict:
    scheduling = {"resource_class": "llm_wait", "weight": weight}
    return {"name": name, "type": "llm_text", "model": alias, "prompt": "x", "scheduling": scheduling}


CONFIG = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
    "models": [{"alias": "a", "provider": "p", "model": "m1"}, {"alias": "b", "provider": "p", "model": "m2"}],
    "columns": [llm("heavy", "a", 3), llm("light", "a", 1), llm("other", "b", 1)],
}


def scheduler(policy: str, sink: MemorySink | None = None) -> Scheduler:
    config = DatasetConfig.from_dict({**CONFIG, "run": {"task_policy": policy}})
    plan = build_plan(config, 20)
    s = Scheduler(
        config=config,
        plan=plan,
        generators={c.name: Blocked() for c in plan.columns},  # type: ignore[misc]
        checkpointer=None,  # type: ignore[arg-type]
        endpoints=Endpoints(),
        seed=1,
        sink=sink,
        clock=ManualClock(),
    )
    spec = plan.row_groups[0]
    s.active[spec.index] = RowGroupState(plan, spec)
    return s


def hold(s: Scheduler, column: str, n: int) -> None:
    """Leases a column already holds on its pool (tasks admitted earlier), each within its weighted share."""
    group = s._groups[column]
    waiting = {g.key: g.weight for g in s._groups.values() if g.pool == group.pool}
    for _ in range(n):
        assert s.admission.try_acquire(group.pool, group.key, waiting) is not None


def queue(s: Scheduler, column: str, rows: range) -> None:
    for row in rows:
        s.ready.push(Task(0, column, row), s._groups[column], now=0.0)


def running(s: Scheduler, column: str) -> list:
    return [r for r in s._running.values() if r.task.column == column]


async def stop(s: Scheduler) -> None:
    for atask in list(s._running):
        atask.cancel()
    await asyncio.gather(*s._running, return_exceptions=True)


async def test_a_weighted_groups_last_queued_task_is_leased_under_its_own_weight_not_as_a_borrow():
    s = scheduler("bounded_borrow")
    hold(s, "heavy", 4)  # share of heavy (weight 3 of 4) in 8 slots: 6
    hold(s, "light", 2)  # share of light: 2
    queue(s, "heavy", range(1))  # its only queued task: taking it must not make the lease forget its weight
    queue(s, "light", range(1, 4))
    s._dispatch()
    try:
        (heavy,) = running(s, "heavy")
        assert not heavy.lease.borrowed  # 5 of a share of 6
        assert s.admission.debt(s._groups["heavy"].key) == 0
    finally:
        await stop(s)


async def test_a_group_eligible_within_its_share_is_not_refused_its_lease_and_other_pools_still_run():
    s = scheduler("strict_fair")
    hold(s, "heavy", 4)
    hold(s, "light", 2)
    queue(s, "heavy", range(1))  # queued first: served first
    queue(s, "light", range(1, 4))  # at its share under strict fairness: waits while heavy does
    queue(s, "other", range(3))  # another model's pool, all free
    s._dispatch()
    try:
        assert len(running(s, "heavy")) == 1  # before: refused at weight 1, and dispatch stopped for every pool
        assert len(running(s, "other")) == 3
        assert len(running(s, "light")) == 1  # the last slot, once no peer waits
        assert s.admission.in_use(model_pool("a")) == 8
    finally:
        await stop(s)


async def test_a_lease_is_taken_on_the_judgement_that_made_its_group_eligible(monkeypatch):
    """Eligibility judges each group once per selection and the lease is granted on that judgement: the
    policy is not asked again, and a group over its share still borrows as eligibility said."""
    sink = MemorySink()
    s = scheduler("bounded_borrow", sink)
    hold(s, "heavy", 6)  # its whole share of 6 in 8 slots: a seventh is a borrow
    queue(s, "heavy", range(1))
    queue(s, "light", range(1, 2))
    judged = []
    admissible = s.admission.admissible

    def counting(pool, group, waiting):
        judged.append(group)
        return admissible(pool, group, waiting)

    monkeypatch.setattr(s.admission, "admissible", counting)
    s._dispatch()
    try:
        (heavy,) = running(s, "heavy")
        assert heavy.lease.borrowed and s.admission.debt(s._groups["heavy"].key) == 1
        assert len(running(s, "light")) == 1
        # one judgement per eligible group per selection (and one for the pass's last, unsuccessful selection)
        assert judged.count(s._groups["heavy"].key) == 1
        assert not sink.of(TaskBlocked)
    finally:
        await stop(s)
