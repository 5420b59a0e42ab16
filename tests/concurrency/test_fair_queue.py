"""The generic weighted fair queue: virtual-time fairness, two-phase take, eligibility, removal."""

from __future__ import annotations

from collections import Counter

import pytest

from rowloom.concurrency.fair_queue import FairQueue, StaleSelection


def drain(queue: FairQueue, n: int | None = None, eligible=None) -> list:
    out = []
    while len(queue) and (n is None or len(out) < n):
        selection = queue.select_next(eligible)
        if selection is None:
            break
        out.append((selection.group, queue.commit(selection)))
    return out


def test_fifo_within_a_group_without_priority():
    queue: FairQueue[str, int] = FairQueue()
    for i in range(5):
        queue.push("a", i)
    assert [item for _, item in drain(queue)] == [0, 1, 2, 3, 4]


def test_priority_orders_items_within_a_group_and_ties_stay_fifo():
    queue: FairQueue[str, str] = FairQueue()
    queue.push("a", "rg2-first", priority=(2,))
    queue.push("a", "rg0", priority=(0,))
    queue.push("a", "rg2-second", priority=(2,))
    queue.push("a", "rg1", priority=(1,))
    assert [item for _, item in drain(queue)] == ["rg0", "rg1", "rg2-first", "rg2-second"]


def test_equal_weights_alternate_between_backlogged_groups():
    queue: FairQueue[str, int] = FairQueue()
    for i in range(4):
        queue.push("a", i)
        queue.push("b", i)
    assert [group for group, _ in drain(queue)] == ["a", "b"] * 4


def test_weights_three_to_one_share_service_three_to_one():
    queue: FairQueue[str, int] = FairQueue()
    for i in range(300):
        queue.push("heavy", i, weight=3.0)
        queue.push("light", i, weight=1.0)
    served = Counter(group for group, _ in drain(queue, 200))
    assert served["heavy"] == 150
    assert served["light"] == 50


def test_a_group_returning_from_idle_gets_no_credit_for_the_idle_time():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("returning", 0)
    for i in range(100):
        queue.push("busy", i)
    assert sorted(g for g, _ in drain(queue, 2)) == ["busy", "returning"]
    drain(queue, 48)  # "returning" sits idle while "busy" is served 48 more times
    for i in range(10):
        queue.push("returning", i)
    # with credit for its idle time it would now be served 10 times in a row; without, the two alternate
    assert [group for group, _ in drain(queue, 6)] == ["returning", "busy"] * 3


def test_a_group_that_just_left_cannot_jump_ahead_of_its_share_by_returning():
    queue: FairQueue[str, int] = FairQueue()
    for i in range(10):
        queue.push("steady", i)
    queue.push("bursty", 0)
    queue.push("bursty", 1)
    order = [group for group, _ in drain(queue, 4)]
    assert order.count("bursty") == 2 and order.count("steady") == 2
    queue.push("bursty", 2)  # returns at once: its finish tag is ahead of virtual time, so it waits its turn
    assert [group for group, _ in drain(queue, 2)] == ["steady", "bursty"]


def test_groups_coming_and_going_each_get_an_equal_share_while_backlogged():
    queue: FairQueue[str, int] = FairQueue()
    for i in range(60):
        queue.push("a", i)
    first = Counter(g for g, _ in drain(queue, 10))
    for i in range(60):
        queue.push("b", i)
        queue.push("c", i)
    middle = Counter(g for g, _ in drain(queue, 30))
    queue.clear()
    assert first == {"a": 10}
    assert middle == {"a": 10, "b": 10, "c": 10}


def test_select_next_changes_nothing():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("a", 1)
    queue.push("b", 2)
    version = queue.version
    first = queue.select_next()
    second = queue.select_next()
    assert first is not None and second is not None
    assert (first.group, first.item) == (second.group, second.item)
    assert queue.version == version and len(queue) == 2


def test_commit_of_a_stale_selection_is_rejected_and_dequeues_nothing():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("a", 1)
    selection = queue.select_next()
    queue.push("b", 2)  # a concurrent change between select and commit
    with pytest.raises(StaleSelection):
        queue.commit(selection)
    assert len(queue) == 2
    fresh = queue.select_next()
    assert queue.commit(fresh) == 1


def test_a_selection_that_is_not_committed_leaves_the_item_queued():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("a", 1)
    assert queue.select_next() is not None  # e.g. admission refused: simply not committed
    assert queue.group_lengths() == {"a": 1}


def test_eligibility_skips_groups_and_serves_the_next_fair_one():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("blocked", 1)
    queue.push("open", 2)
    queue.push("open", 3)
    assert [item for _, item in drain(queue, eligible=lambda g: g != "blocked")] == [2, 3]
    assert queue.select_next(lambda g: g != "blocked") is None
    assert queue.pop_next() == 1


def test_remove_takes_out_a_cancelled_item_without_charging_its_group():
    queue: FairQueue[str, int] = FairQueue()
    a_items = [object() for _ in range(3)]
    for item in a_items:
        queue.push("a", item)
    queue.push("b", "b0")
    assert queue.remove(a_items[0]) is True
    assert queue.remove(a_items[0]) is False
    assert a_items[0] not in queue and len(queue) == 3
    order = drain(queue)
    assert [item for _, item in order] == [a_items[1], "b0", a_items[2]]


def test_removing_the_last_item_of_a_group_does_not_charge_it():
    queue: FairQueue[str, object] = FairQueue()
    lone = object()
    queue.push("a", lone)
    queue.push("b", "b0")
    queue.push("b", "b1")
    queue.remove(lone)
    assert queue.group_lengths() == {"b": 2}
    queue.push("a", "a1")
    # uncharged, "a" is still at tag 0 and goes right after b0; charged, it would wait behind b1
    assert [item for _, item in drain(queue)] == ["b0", "a1", "b1"]


def test_lengths_per_group_and_in_total():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("a", 1)
    queue.push("a", 2)
    queue.push("b", 3)
    assert len(queue) == 3 and queue.group_len("a") == 2 and queue.group_len("zzz") == 0
    assert queue.group_lengths() == {"a": 2, "b": 1}


def test_the_same_object_may_be_queued_twice_and_removed_once_at_a_time():
    queue: FairQueue[str, int] = FairQueue()
    queue.push("a", 7)
    queue.push("b", 7)
    assert queue.remove(7) and len(queue) == 1
    assert queue.pop_next() == 7 and len(queue) == 0
    assert not queue.remove(7)


def test_nonpositive_weight_is_refused():
    queue: FairQueue[str, int] = FairQueue()
    with pytest.raises(ValueError):
        queue.push("a", 1, weight=0)


def test_virtual_time_never_decreases():
    queue: FairQueue[str, int] = FairQueue()
    seen = []
    for round_ in range(5):
        for i in range(3):
            queue.push(f"g{(round_ + i) % 4}", round_ * 10 + i, weight=1 + i)
        for _ in range(2):
            queue.pop_next()
            seen.append(queue.virtual_time)
    assert seen == sorted(seen)
