"""Task leases: accounting never negative or leaking; strict-fair and bounded-borrow policies; the ready queue's
view of waiting groups."""

from __future__ import annotations

from collections import Counter

from rowloom.concurrency.clock import ManualClock
from rowloom.concurrency.leases import ReleaseStatus
from rowloom.engine.completion import Task
from rowloom.engine.scheduling.ready_queue import ReadyQueue, TaskGroup
from rowloom.engine.scheduling.task_admission import Policy, TaskAdmissionController


def controller(policy=Policy.STRICT_FAIR, capacity=4, bound=2) -> TaskAdmissionController:
    c = TaskAdmissionController(policy=policy, borrow_bound=bound, clock=ManualClock())
    c.add_pool("p", capacity)
    return c


def test_lease_accounting_is_exact_and_release_is_exactly_once():
    c = controller()
    a = c.try_acquire("p", "g")
    b = c.try_acquire("p", "g")
    assert c.in_use("p") == 2 and c.held("p", "g") == 2
    assert c.release(a) is ReleaseStatus.RELEASED
    assert c.release(a) is ReleaseStatus.DUPLICATE
    assert c.in_use("p") == 1
    c.reset()
    assert c.release(b) is ReleaseStatus.STALE
    assert c.in_use("p") == 0
    assert a.id in c.recently_released()


def test_unknown_release_changes_nothing():
    c = controller()
    other = controller()
    foreign = other.try_acquire("p", "g")
    c.try_acquire("p", "g")
    assert c.release(foreign) is ReleaseStatus.UNKNOWN
    assert c.in_use("p") == 1


def test_full_pool_admits_nothing():
    c = controller(capacity=2)
    assert c.try_acquire("p", "g") and c.try_acquire("p", "g")
    assert c.try_acquire("p", "g") is None
    assert c.admissible("p", "g", {})[1] == "pool_full"


def test_alone_a_group_may_use_the_whole_pool():
    c = controller(capacity=4)
    assert all(c.try_acquire("p", "a", {"a": 1.0}) for _ in range(4))


def test_strict_fair_keeps_a_group_within_its_weighted_share_while_a_peer_waits():
    c = controller(capacity=4)
    waiting = {"a": 3.0, "b": 1.0}
    got = [c.try_acquire("p", "a", waiting) for _ in range(4)]
    assert sum(x is not None for x in got) == 3  # share = 4 * 3/4
    assert c.admissible("p", "a", waiting)[1] == "over_share"
    assert c.try_acquire("p", "b", waiting) is not None


def test_bounded_borrow_debt_is_per_group_and_must_be_repaid_before_borrowing_again():
    c = controller(policy=Policy.BOUNDED_BORROW, capacity=8, bound=2)
    waiting = {"a": 1.0, "b": 1.0}
    within = [c.try_acquire("p", "a", waiting) for _ in range(4)]  # share = 4
    borrowed = [c.try_acquire("p", "a", waiting) for _ in range(2)]
    assert all(within) and all(borrowed) and all(lease.borrowed for lease in borrowed)
    assert c.debt("a") == 2
    assert c.try_acquire("p", "a", waiting) is None  # at the bound
    c.release(borrowed[0])
    assert c.debt("a") == 1
    assert c.try_acquire("p", "a", waiting) is None  # still repaying: debt must reach zero first
    c.release(borrowed[1])
    assert c.debt("a") == 0
    again = c.try_acquire("p", "a", waiting)
    assert again is not None and again.borrowed
    # releasing a within-share lease does not touch the debt
    c.release(within[0])
    assert c.debt("a") == 1


def test_dynamic_capacity_is_reread_on_each_decision():
    cap = {"n": 1}
    c = TaskAdmissionController(clock=ManualClock())
    c.add_pool("p", lambda: cap["n"])
    assert c.try_acquire("p", "g") is not None
    assert c.try_acquire("p", "g") is None
    cap["n"] = 3
    assert c.try_acquire("p", "g") is not None
    assert c.free("p") == 1
    cap["n"] = 1  # shrinking below in-use never makes free negative
    assert c.free("p") == 0


def test_the_ready_queue_keeps_each_pools_waiting_groups_as_tasks_come_and_go():
    ready = ReadyQueue()
    question, answer = TaskGroup("question", "model:a", 1.0), TaskGroup("answer", "model:a", 2.0)
    sampler = TaskGroup("topic", "cpu", 1.0)
    for row in range(2):
        ready.push(Task(0, "question", row), question, 0.0)
    ready.push(Task(0, "answer", 0), answer, 0.0)
    ready.push(Task(0, "topic"), sampler, 0.0)
    assert dict(ready.waiting("model:a")) == {question.key: 1.0, answer.key: 2.0}
    assert dict(ready.waiting("cpu")) == {sampler.key: 1.0} and dict(ready.waiting("nothing")) == {}
    taken = []
    while (selection := ready.select(lambda group: group.pool == "model:a")) is not None:
        taken.append(ready.commit(selection).group.column)
        left = Counter(c for c in ["question", "question", "answer"]) - Counter(taken)
        assert dict(ready.waiting("model:a")) == {f"{c}@model:a": {"question": 1.0, "answer": 2.0}[c] for c in left}
    assert sorted(taken) == ["answer", "question", "question"] and dict(ready.waiting("cpu")) == {sampler.key: 1.0}


def test_a_pass_of_decisions_reads_each_pools_capacity_once_and_the_next_pass_reads_it_again():
    reads: list[int] = []
    limit = [4]

    def capacity() -> int:
        reads.append(limit[0])
        return limit[0]

    tac = TaskAdmissionController(policy=Policy.STRICT_FAIR)
    tac.add_pool("model:m", capacity)
    tac.add_pool("cpu", 2)
    with tac.decisions():
        leases = [tac.try_acquire("model:m", "g") for _ in range(3)]
        limit[0] = 1  # moves mid-pass (it cannot in a run): the pass keeps what it first read
        with tac.decisions():  # a nested pass shares the outer one's reads
            assert tac.free("model:m") == 1
        assert tac.try_acquire("cpu", "g") is not None
    assert all(leases) and reads == [4]
    assert tac.free("model:m") == 0 and tac.capacity("model:m") == 1  # outside a pass: read each time
    assert reads == [4, 1, 1]
