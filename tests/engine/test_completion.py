"""The completion tracker makes a cell ready as soon as its row's inputs are done, and handles drops."""

from __future__ import annotations

from rowloom.config import DatasetConfig
from rowloom.engine.completion import RowGroupState, Task
from rowloom.engine.plan import build_plan

CONFIG = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}],
    "models": [{"alias": "m", "provider": "p", "model": "x"}],
    "columns": [
        {"name": "topic", "type": "category", "values": ["a", "b"]},
        {"name": "q", "type": "llm_text", "model": "m", "prompt": "{{ topic }}"},
        {"name": "a", "type": "llm_text", "model": "m", "prompt": "{{ q }}"},
        {"name": "n", "type": "expression", "expr": "a | length", "dtype": "int"},
    ],
    "run": {"row_group_size": 3},
}


def state() -> RowGroupState:
    plan = build_plan(DatasetConfig.from_dict(CONFIG), 3)
    return RowGroupState(plan, plan.row_groups[0])


def test_only_input_free_columns_are_ready_at_admission():
    s = state()
    assert s.initial_tasks() == [Task(0, "topic")]


def test_a_chain_cell_is_ready_when_its_own_row_is_done_not_the_whole_column():
    s = state()
    ready = s.mark_batch_done("topic", ["a", "b", "a"])
    assert ready == [Task(0, "q", 0), Task(0, "q", 1), Task(0, "q", 2)]
    # Row 1 of q finishes first: only row 1 of the next column becomes ready.
    assert s.mark_cell_done("q", 1, "Q1") == [Task(0, "a", 1)]
    assert s.row_values(1, ("q",)) == {"q": "Q1"}


def test_batch_column_waits_for_every_live_row_of_its_inputs():
    s = state()
    s.mark_batch_done("topic", ["a", "b", "a"])
    for r in range(3):
        s.mark_cell_done("q", r, f"Q{r}")
    assert s.mark_cell_done("a", 0, "A0") == []
    assert s.mark_cell_done("a", 1, "A1") == []
    assert s.mark_cell_done("a", 2, "A2") == [Task(0, "n")]
    assert not s.complete
    s.mark_batch_done("n", [2, 2, 2])
    assert s.complete


def test_dropping_a_row_unblocks_batch_columns_and_ignores_late_results():
    s = state()
    s.mark_batch_done("topic", ["a", "b", "a"])
    s.mark_cell_done("q", 0, "Q0")
    s.mark_cell_done("q", 2, "Q2")
    s.mark_cell_done("a", 0, "A0")
    assert s.mark_cell_done("a", 2, "A2") == []
    ready = s.drop_row(1, "q:server_error")
    assert ready == [Task(0, "n")]
    assert s.mark_cell_done("q", 1, "late") == []  # a result for a dropped row changes nothing
    assert s.live_rows == [0, 2]
    s.mark_batch_done("n", [2, None, 2])
    assert s.complete
    assert s.dropped == {1: "q:server_error"}


def test_dropping_the_same_row_twice_counts_once():
    s = state()
    s.mark_batch_done("topic", ["a", "b", "a"])
    s.drop_row(0, "x")
    assert s.drop_row(0, "y") == []
    assert s.dropped == {0: "x"}
