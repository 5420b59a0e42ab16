"""The completion tracker reports each row once, the moment its last cell (or batch column) has its value;
a dropped row is never done."""

from __future__ import annotations

from rowloom.config import DatasetConfig
from rowloom.engine.completion import RowGroupState
from rowloom.engine.plan import build_plan

CONFIG = {
    "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}],
    "models": [{"alias": "m", "provider": "p", "model": "x"}],
    "columns": [
        {"name": "topic", "type": "category", "values": ["a", "b"]},
        {"name": "q", "type": "llm_text", "model": "m", "prompt": "{{ topic }}"},
        {"name": "n", "type": "expression", "expr": "q | length", "dtype": "int"},
        {"name": "a", "type": "llm_text", "model": "m", "prompt": "{{ q }}"},
    ],
    "run": {"row_group_size": 3},
}


def test_a_row_is_done_when_its_last_cell_is_and_a_dropped_row_never_is():
    plan = build_plan(DatasetConfig.from_dict(CONFIG), 3)
    done: list[int] = []
    s = RowGroupState(plan, plan.row_groups[0], on_row_done=lambda: done.append(s.rows_done))
    s.mark_batch_done("topic", ["a", "b", "a"])
    for row in range(3):
        s.mark_cell_done("q", row, f"Q{row}")
    s.mark_cell_done("a", 0, "A0")
    s.mark_cell_done("a", 1, "A1")
    assert done == []  # the batch column `n` has not run: no row has every value yet
    s.drop_row(2, "a:timeout")
    s.mark_batch_done("n", [2, 2, None])
    assert done == [1, 2] and s.rows_done == 2 and s.complete
    s.mark_cell_done("a", 2, "late")  # a late result for the dropped row changes nothing
    assert s.rows_done == 2


def test_rows_of_a_chain_count_one_by_one_as_their_last_cells_land():
    config = dict(CONFIG, columns=CONFIG["columns"][:2])
    plan = build_plan(DatasetConfig.from_dict(config), 3)
    s = RowGroupState(plan, plan.row_groups[0])
    s.mark_batch_done("topic", ["a", "b", "a"])
    assert s.rows_done == 0
    s.mark_cell_done("q", 1, "Q1")
    assert s.rows_done == 1 and not s.complete
    s.mark_cell_done("q", 0, "Q0")
    s.mark_cell_done("q", 2, "Q2")
    assert s.rows_done == 3 and s.complete
