"""Request-pressure advice: a pressured endpoint's task yields to an open endpoint's, but never starves."""

from __future__ import annotations

from rowloom.config import DatasetConfig
from rowloom.engine.completion import Task
from rowloom.engine.plan import build_plan
from rowloom.engine.scheduler import Scheduler
from rowloom.engine.scheduling.ports import PoolReads
from rowloom.observe.events.scheduler import AdvisorySkip
from rowloom.observe.sinks import MemorySink


class Endpoints:
    def __init__(self, pressured: set[str]):
        self.pressured = pressured

    def capacity(self, alias: str) -> int:
        return 8

    def saturated(self, alias: str) -> bool:
        return alias in self.pressured

    def cooling(self, alias: str) -> bool:
        return False

    def backing_off(self, alias: str) -> int:
        return 0


CONFIG = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
    "models": [{"alias": "tight", "provider": "p", "model": "a"}, {"alias": "open", "provider": "p", "model": "b"}],
    "columns": [
        {"name": "t", "type": "llm_text", "model": "tight", "prompt": "x"},
        {"name": "o", "type": "llm_text", "model": "open", "prompt": "y"},
    ],
}


def scheduler(pressured: set[str], sink: MemorySink) -> Scheduler:
    config = DatasetConfig.from_dict(CONFIG)
    plan = build_plan(config, 100)
    s = Scheduler(
        config=config,
        plan=plan,
        generators={},
        checkpointer=None,  # type: ignore[arg-type]
        endpoints=Endpoints(pressured),
        seed=1,
        sink=sink,
        max_advisory_skips=3,
    )
    for row in range(40):
        for column in ("t", "o"):
            s.ready.push(Task(0, column, row), s._groups[column], now=0.0)
    return s


def picks(s: Scheduler, n: int) -> list[str]:
    """The next `n` selections, each committed without a lease, saturation read afresh for each."""
    return [s.ready.commit(s._select_next(PoolReads(s._saturated))[0]).task.column for _ in range(n)]


def test_without_pressure_groups_alternate_fairly():
    order = picks(scheduler(set(), MemorySink()), 20)
    assert order.count("t") == order.count("o") == 10


def test_open_endpoint_goes_first_while_the_other_is_pressured_but_the_skipped_group_is_not_starved():
    sink = MemorySink()
    order = picks(scheduler({"tight"}, sink), 40)
    assert order.count("o") > order.count("t") > 0
    longest_wait = max(len(run) for run in "".join(order).split("t") if run)
    assert longest_wait <= 3 + 1  # at most max_advisory_skips skips, then the pressured group is served
    skips = sink.of(AdvisorySkip)
    assert skips and all(e.skipped_group == "t@model:tight" and e.chosen_group == "o@model:open" for e in skips)


def test_when_every_endpoint_is_pressured_fairness_decides():
    order = picks(scheduler({"tight", "open"}, MemorySink()), 20)
    assert order.count("t") == order.count("o") == 10


def test_the_task_policy_comes_from_the_run_config():
    config = DatasetConfig.from_dict({**CONFIG, "run": {"task_policy": "strict_fair"}})
    s = Scheduler(
        config=config,
        plan=build_plan(config, 10),
        generators={},
        checkpointer=None,  # type: ignore[arg-type]
        endpoints=Endpoints(set()),
        seed=1,
    )
    assert s.admission.policy.value == "strict_fair"
    assert scheduler(set(), MemorySink()).admission.policy.value == "bounded_borrow"  # the default
