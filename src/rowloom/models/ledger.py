"""The token ledger: every request attempt's reported usage and its price, per column, model alias and endpoint,
and what rows that were dropped cost. Budgets and estimates build on these counts; neither lives here.

Built from `RequestCompleted`, `BatchLineCompleted` and `RowGroupCheckpointed` events only, so it reads the same
whether it watched a run live or replays its event log. Knows columns and rows only as the ids the events carry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from rowloom.config.pricing import Pricing
from rowloom.models.types import Usage
from rowloom.observe.events.base import Event

__all__ = ["TokenCounts", "TokenLedger", "merge_ledgers", "usage_fields"]


def usage_fields(usage: Usage | None) -> dict[str, Any]:
    """The `RequestCompleted` fields of a reply's usage (all None for an attempt that got no reply)."""
    if usage is None:
        return {}
    if not usage.known:
        return {"usage_known": False}
    return {
        "usage_known": True,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }


@dataclass(slots=True)
class TokenCounts:
    """What some request attempts used. `requests` counts every attempt that ended (failed ones too: a 429 or a
    5xx is a request, not tokens); `unknown_usage` counts replies that carried no usage, whose tokens are unknown,
    not zero; `abandoned` counts attempts cancelled in flight (Ctrl-C, a run that stopped), which the provider may
    have served and billed though no reply was read. `cached_tokens` is part of `prompt_tokens` and
    `reasoning_tokens` part of `completion_tokens`. `cost` is the price of the reported usage of models with
    prices; `unpriced` counts replies with usage of models without prices (their cost is not in `cost`)."""

    requests: int = 0
    unknown_usage: int = 0
    abandoned: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens (of the replies that reported usage)."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: TokenCounts) -> None:
        """Add another count to this one (field by field, written out: five adds per request, where a loop over
        the fields' names cost 2 µs each)."""
        self.requests += other.requests
        self.unknown_usage += other.unknown_usage
        self.abandoned += other.abandoned
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost += other.cost
        self.unpriced += other.unpriced

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (summary.json, manifest.json), with `total_tokens`."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNT_FIELDS}
        out["total_tokens"] = self.total_tokens
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TokenCounts:
        """Read `to_dict` output back; missing or malformed counts read as zero."""
        data = data if isinstance(data, dict) else {}
        counts = cls(**{name: _int(data.get(name)) for name in _COUNT_FIELDS if name != "cost"})
        cost = data.get("cost")
        counts.cost = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0
        return counts

    @classmethod
    def of_event(cls, event: Any, prices: Pricing | None = None) -> TokenCounts:
        """One attempt's counts from its `RequestCompleted` event, priced with `prices` when given."""
        known = getattr(event, "usage_known", None)
        if known is None:  # no reply: a failed attempt (or an event from before the ledger) spent no tokens
            return cls(requests=1, abandoned=int(event.outcome == "cancelled"))
        if not known:
            return cls(requests=1, unknown_usage=1)
        counts = cls(
            requests=1,
            prompt_tokens=_int(event.prompt_tokens),
            completion_tokens=_int(event.completion_tokens),
            cached_tokens=_int(event.cached_tokens),
            reasoning_tokens=_int(event.reasoning_tokens),
        )
        if prices is None:
            counts.unpriced = 1
        else:
            counts.cost = prices.cost(counts.prompt_tokens, counts.completion_tokens, counts.cached_tokens)
        return counts


_COUNT_FIELDS = tuple(f.name for f in fields(TokenCounts))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class TokenLedger:
    """Token counts of a run: in total, by column (the request's admission group, which the engine sets to the
    column name), by model alias and by endpoint (the resource key's label), and the part spent on rows that were
    dropped.

    A row's spend is known once its row group is checkpointed (`RowGroupCheckpointed.dropped_rows`): until then
    the attempts of cell tasks wait per row, then the dropped rows' part moves to `dropped_rows`. Spend of a whole
    column task (a batch) belongs to no single row and is not split.
    """

    def __init__(
        self,
        prices: Mapping[str, Pricing | None] | None = None,
        batch_prices: Mapping[str, Pricing | None] | None = None,
    ) -> None:
        """`prices` by model alias price online attempts, `batch_prices` the lines sent through a batch API."""
        self.prices = dict(prices or {})
        self.batch_prices = dict(batch_prices or {})
        # Per batch model alias: what its batch lines cost, and what the same usage costs at its online prices.
        self.batch_costs: dict[str, list[float]] = {}
        self.total = TokenCounts()
        self.by_column: dict[str, TokenCounts] = defaultdict(TokenCounts)
        self.by_model: dict[str, TokenCounts] = defaultdict(TokenCounts)
        self.by_endpoint: dict[str, TokenCounts] = defaultdict(TokenCounts)
        self.dropped_rows = TokenCounts()
        # Spend of rows whose row group is not written yet: row group -> row -> counts.
        self._pending: dict[int, dict[int, TokenCounts]] = defaultdict(lambda: defaultdict(TokenCounts))
        # The dropped rows of written row groups: an attempt of a dropped row may end after its row group was
        # written (a cell of another column still in flight when the row dropped), and is still the row's spend.
        self._settled: dict[int, frozenset[int]] = {}

    #: the events it takes (a `FanoutSink` sends it only these); `emit` ignores any other
    kinds: ClassVar[frozenset[str]] = frozenset({"request_completed", "batch_line_completed", "row_group_checkpointed"})

    def emit(self, event: Event) -> None:
        """Take what a request or checkpoint event says; other events are ignored."""
        kind = event.kind
        if kind == "request_completed":
            self._record(event, self.prices)
        elif kind == "batch_line_completed":
            counts = self._record(event, self.batch_prices)
            online = TokenCounts.of_event(event, self.prices.get(event.alias or "")).cost
            costs = self.batch_costs.setdefault(event.alias, [0.0, 0.0])
            costs[0] += counts.cost
            costs[1] += online
        elif kind == "row_group_checkpointed" and event.row_group is not None:
            self.settle(event.row_group, getattr(event, "dropped_rows", ()))

    def close(self) -> None:
        return None

    def _record(self, event: Any, prices: Mapping[str, Pricing | None]) -> TokenCounts:
        counts = TokenCounts.of_event(event, prices.get(event.alias or ""))
        self.total.add(counts)
        self.by_column[event.group].add(counts)
        self.by_model[event.alias or "?"].add(counts)
        self.by_endpoint[event.key].add(counts)
        row, row_group = _row_of(event.task), event.row_group
        if row_group is None or row is None:
            return counts
        settled = self._settled.get(row_group)
        if settled is None:
            self._pending[row_group][row].add(counts)
        elif row in settled:
            self.dropped_rows.add(counts)
        return counts

    def settle(self, row_group: int, dropped: Any) -> None:
        """Row group `row_group` is written; its rows `dropped` (local indices) were dropped. Settling twice (the
        writer before the manifest, then the event) changes nothing the second time."""
        if row_group in self._settled:
            return
        self._settled[row_group] = frozenset(dropped)
        rows = self._pending.pop(row_group, {})
        for row in self._settled[row_group]:
            if row in rows:
                self.dropped_rows.add(rows[row])

    @property
    def currency(self) -> str | None:
        """The prices' currency (one per config), or None without prices."""
        return next((p.currency for p in self.prices.values() if p is not None), None)

    def to_dict(self) -> dict[str, Any]:
        """The `ledger` section of summary.json and manifest.json."""

        def table(counts: dict[str, TokenCounts]) -> dict[str, dict[str, int]]:
            # A copy first: the writer thread reads while the event loop may add a key.
            return {name: c.to_dict() for name, c in sorted(dict(counts).items())}

        return {
            "currency": self.currency,
            "prices": {alias: p.model_dump() for alias, p in sorted(self.prices.items()) if p is not None},
            "totals": self.total.to_dict(),
            "by_column": table(self.by_column),
            "by_model": table(self.by_model),
            "by_endpoint": table(self.by_endpoint),
            "dropped_rows": self.dropped_rows.to_dict(),
            **({"batch_savings": self.batch_savings()} if self.batch_costs else {}),
        }

    def batch_savings(self) -> dict[str, dict[str, float]]:
        """Per batch model alias: what its batch lines cost and what the same usage would cost online (both in
        the prices' currency; 0 without prices)."""
        return {
            alias: {"cost": round(cost, 6), "cost_at_online_prices": round(online, 6), "saved": round(online - cost, 6)}
            for alias, (cost, online) in sorted(dict(self.batch_costs).items())
        }


def merge_ledgers(*ledgers: Any) -> dict[str, Any]:
    """The sum of several `TokenLedger.to_dict()` documents (a manifest's earlier runs plus this one); anything
    that is not such a document counts as empty."""
    total, dropped = TokenCounts(), TokenCounts()
    tables: dict[str, dict[str, TokenCounts]] = {"by_column": {}, "by_model": {}, "by_endpoint": {}}
    currency, prices = None, {}
    for ledger in ledgers:
        if not isinstance(ledger, dict):
            continue
        prices = ledger.get("prices") or prices  # the latest run's: what the report prices events with
        named = ledger.get("currency")
        if named and currency and named != currency:
            named = "mixed"  # prices changed currency between runs: the sums are not in either one
        currency = named or currency
        total.add(TokenCounts.from_dict(ledger.get("totals")))
        dropped.add(TokenCounts.from_dict(ledger.get("dropped_rows")))
        for section, merged in tables.items():
            entries = ledger.get(section)
            for name, counts in (entries if isinstance(entries, dict) else {}).items():
                merged.setdefault(name, TokenCounts()).add(TokenCounts.from_dict(counts))
    return {
        "currency": currency,
        "prices": prices,
        "totals": total.to_dict(),
        **{section: {n: c.to_dict() for n, c in sorted(m.items())} for section, m in tables.items()},
        "dropped_rows": dropped.to_dict(),
    }


def _row_of(task: str | None) -> int | None:
    """The local row of a cell task's id (`row_group:column:row`, see `rowloom.engine.completion.Task.id`); None
    for a whole-column task (`row_group:column`)."""
    if not task:
        return None
    head, _, tail = task.rpartition(":")
    return int(tail) if tail.isdigit() and ":" in head else None
