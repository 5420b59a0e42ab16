"""The token ledger's pure parts: counts from events, settling dropped rows once, and adding up manifests."""

from __future__ import annotations

from dataclasses import fields

from rowloom.models.ledger import TokenCounts, TokenLedger, merge_ledgers
from rowloom.observe.context import correlate
from rowloom.observe.events.request import RequestCompleted
from rowloom.observe.events.scheduler import RowGroupCheckpointed


def completed(task: str, row_group: int, **usage) -> RequestCompleted:
    with correlate(row_group=row_group, task=task, column=task.split(":")[1]):
        return RequestCompleted(
            key="p/m", alias="w", group=task.split(":")[1], lease=1, outcome="success", latency_s=0.1, tokens=None,
            **usage,
        )  # fmt: skip


def test_a_row_group_settled_twice_counts_its_dropped_rows_once():
    ledger = TokenLedger()
    ledger.emit(completed("0:q:1", 0, usage_known=True, prompt_tokens=10, completion_tokens=5))
    ledger.emit(completed("0:q:2", 0, usage_known=True, prompt_tokens=7, completion_tokens=3))
    ledger.settle(0, {1: "q:schema_invalid"})  # the writer, before the manifest
    with correlate(row_group=0):
        ledger.emit(RowGroupCheckpointed(rows=1, dropped=1, dropped_rows=[1]))  # the event, after
    assert ledger.dropped_rows.total_tokens == 15 and ledger.total.total_tokens == 25


def test_a_whole_column_tasks_spend_belongs_to_no_row():
    ledger = TokenLedger()
    ledger.emit(completed("0:batch", 0, usage_known=True, prompt_tokens=10, completion_tokens=5))
    ledger.emit(completed("0:q:0", 0, usage_known=False))
    with correlate(row_group=0):
        ledger.emit(RowGroupCheckpointed(rows=0, dropped=1, dropped_rows=[0]))
    assert ledger.dropped_rows.to_dict()["unknown_usage"] == 1 and ledger.dropped_rows.total_tokens == 0
    assert ledger.total.requests == 2 and ledger.total.unknown_usage == 1


def test_manifests_add_up_and_a_damaged_one_counts_as_empty():
    ledger = TokenLedger()
    ledger.emit(completed("0:q:0", 0, usage_known=True, prompt_tokens=10, completion_tokens=5, cached_tokens=4))
    one = ledger.to_dict()
    merged = merge_ledgers(one, one, None, "garbage", {"totals": {"prompt_tokens": "x"}, "by_model": []})
    assert merged["totals"]["prompt_tokens"] == 20 and merged["totals"]["cached_tokens"] == 8
    assert merged["by_column"]["q"]["requests"] == 2 and merged["by_endpoint"]["p/m"]["total_tokens"] == 30
    assert merge_ledgers(one) == one


def test_an_attempt_of_a_dropped_row_that_ends_after_its_row_group_was_written_is_still_dropped_spend():
    ledger = TokenLedger()
    ledger.settle(3, [0])
    ledger.emit(completed("3:a:0", 3, usage_known=True, prompt_tokens=6, completion_tokens=2))  # late, dropped row
    ledger.emit(completed("3:a:1", 3, usage_known=True, prompt_tokens=1, completion_tokens=1))  # late, written row
    assert ledger.dropped_rows.total_tokens == 8 and ledger.total.total_tokens == 10


def test_adding_counts_adds_every_field():
    """`add` names each field (it runs five times per request): a field it left out would be lost from every
    total, the run's, each column's, model's and endpoint's."""
    one = TokenCounts(**{f.name: i + 1 for i, f in enumerate(fields(TokenCounts))})
    total = TokenCounts()
    total.add(one)
    total.add(one)
    assert {f.name: getattr(total, f.name) for f in fields(TokenCounts)} == {
        f.name: 2 * (i + 1) for i, f in enumerate(fields(TokenCounts))
    }
