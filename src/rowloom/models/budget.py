"""The run's spend: what its request attempts were charged, and the budget that holds back or refuses an attempt
that may not fit.

Every attempt reserves its worst case before it is sent — a bound on its prompt tokens plus its `max_tokens`,
waiting while the worst cases of the attempts in flight leave no room for it, refused once what is spent leaves
none — and settles when it ends: with the tokens the reply reported, with the worst case when the provider may have
billed without saying (a reply without usage, a timeout, a reply cut off, an attempt abandoned in flight), or with
the request alone when the provider turned it away (a 429, a 503 or 529, another 4xx). With `max_tokens` set the
charged spend therefore never passes a limit; without it the replies in flight can pass it by their length.

The spend is cumulative across the runs of one output folder: the manifest records it with every row group, so
a resumed run — perhaps with a raised budget — starts from what the earlier runs were charged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rowloom.config.pricing import BudgetConfig, Pricing
from rowloom.errors import BudgetReached
from rowloom.models.types import Usage

__all__ = ["BudgetReached", "Reservation", "Spend", "SpendBudget", "spend_from_manifest"]


@dataclass(slots=True)
class Spend:
    """What request attempts were charged: money (in the prices' currency), tokens and attempts."""

    cost: float = 0.0
    tokens: int = 0
    requests: int = 0

    def add(self, other: Spend, sign: int = 1) -> None:
        self.cost += sign * other.cost
        self.tokens += sign * other.tokens
        self.requests += sign * other.requests

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "tokens": self.tokens, "requests": self.requests}

    @classmethod
    def from_dict(cls, data: Any) -> Spend:
        """Read `to_dict` output back (a manifest's); anything malformed reads as nothing spent."""
        data = data if isinstance(data, dict) else {}

        def number(key: str, kind: type) -> Any:
            value = data.get(key)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            return kind(value) if ok else kind(0)

        return cls(cost=number("cost", float), tokens=number("tokens", int), requests=number("requests", int))


@dataclass(slots=True)
class Reservation:
    """An attempt, from before it is sent until it is settled: the worst case it holds against the limits (None
    without limits: then it is worked out, from `bounds`, only for an attempt that must be charged it)."""

    alias: str
    worst: Spend | None
    bounds: Callable[[], tuple[int, int]]
    settled: bool = field(default=False)
    batch: bool = False  # sent through a batch API: priced at the model's batch prices


_UNITS = {"max_cost": "cost", "max_tokens": "tokens", "max_requests": "requests"}


class SpendBudget:
    """Charges every attempt of a run and, with limits, holds back an attempt whose worst case would pass one
    until the attempts in flight settle, and refuses one that can no longer fit.

    `before` is what the earlier runs into the same output were charged. Belongs to the run's event loop.
    """

    def __init__(
        self,
        limits: BudgetConfig | None,
        prices: Mapping[str, Pricing | None],
        *,
        before: Spend | None = None,
        batch_prices: Mapping[str, Pricing | None] | None = None,
    ):
        """`prices` by model alias price online attempts, `batch_prices` those sent through a batch API."""
        self.limits = limits
        self.prices = dict(prices)
        self.batch_prices = dict(batch_prices or {})
        self.before = before or Spend()
        self.this_run = Spend()  # charged by this run's settled attempts
        self._freed: asyncio.Event | None = None  # set when a held worst case is given back
        self.reserved = Spend()  # worst cases of the attempts not settled yet
        self.currency = next((p.currency for p in self.prices.values() if p is not None), "")

    @property
    def spent(self) -> Spend:
        """Charged so far, earlier runs included."""
        total = Spend()
        total.add(self.before)
        total.add(self.this_run)
        return total

    async def reserve(self, alias: str, bounds: Callable[[], tuple[int, int]], *, batch: bool = False) -> Reservation:
        """Hold an attempt's worst case, from `bounds()` = upper bounds on its (prompt, completion) tokens.

        An attempt that does not fit beside the worst cases held by attempts in flight waits for them to settle
        (they mostly cost less than their worst case); one that does not fit beside what is already spent never
        will: `BudgetReached`. Without limits nothing is held (and `bounds` is called only if the attempt is
        charged its worst case). A `batch` attempt is priced at the model's batch prices."""
        if self.limits is None:
            return Reservation(alias, None, bounds, batch=batch)
        worst = self._worst(alias, bounds, batch)
        while not self._fits(worst):
            if self._freed is None:
                self._freed = asyncio.Event()
            await self._freed.wait()  # set by the next settlement
        self.reserved.add(worst)
        return Reservation(alias, worst, bounds, batch=batch)

    def settle(self, reservation: Reservation, *, usage: Usage | None = None, billed: bool = True) -> None:
        """Charge a finished attempt and give its reservation back.

        `usage` is what a reply reported; without it (or with `usage.known` False) the worst case is charged when
        the provider may have `billed` the attempt, and only the request otherwise."""
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.worst is not None:
            self.reserved.add(reservation.worst, -1)
            if self._freed is not None:  # attempts wait for room: wake them to look again
                self._freed.set()
                self._freed = None
        run = self.this_run
        if usage is not None and usage.known:
            run.requests += 1
            run.tokens += usage.prompt_tokens + usage.completion_tokens
            run.cost += self._cost(
                reservation.alias, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, reservation.batch
            )
        elif billed:
            run.add(reservation.worst or self._worst(reservation.alias, reservation.bounds, reservation.batch))
        else:
            run.requests += 1

    def _worst(self, alias: str, bounds: Callable[[], tuple[int, int]], batch: bool) -> Spend:
        prompt, completion = bounds()
        return Spend(cost=self._cost(alias, prompt, completion, 0, batch), tokens=prompt + completion, requests=1)

    def _cost(self, alias: str, prompt: int, completion: int, cached: int, batch: bool) -> float:
        price = (self.batch_prices if batch else self.prices).get(alias)
        return 0.0 if price is None else price.cost(prompt, completion, cached)

    def _fits(self, worst: Spend) -> bool:
        """Whether `worst` fits beside what is spent and held now; `BudgetReached` when it does not fit beside
        what is spent alone (what is held only ever turns into spend)."""
        assert self.limits is not None
        spent, held = self.spent, self.reserved
        fits = True
        for limit, unit in _UNITS.items():
            allowed = getattr(self.limits, limit)
            if allowed is None:
                continue
            if getattr(spent, unit) + getattr(worst, unit) > allowed:
                raise BudgetReached(limit, f"budget reached: {self.spent_of(limit)} spent")
            fits = fits and getattr(spent, unit) + getattr(held, unit) + getattr(worst, unit) <= allowed
        return fits

    def room_for(self, new_rows: int, unfinished_rows: int, finished_rows: int) -> bool:
        """Whether `new_rows` more rows are expected to fit beside the `unfinished_rows` already started, at what
        this run's `finished_rows` cost each so far (their partial spend counted twice: on the safe side). Only a
        forecast, so that a run near its budget finishes the rows it started instead of starting more it cannot
        finish; the reservations are what keep the budget."""
        if self.limits is None or finished_rows <= 0:
            return True
        spent = self.spent
        for limit, unit in _UNITS.items():
            allowed = getattr(self.limits, limit)
            per_row = getattr(self.this_run, unit) / finished_rows
            if allowed is not None and getattr(spent, unit) + per_row * (unfinished_rows + new_rows) > allowed:
                return False
        return True

    def spent_of(self, limit: str) -> str:
        """`11.98 of 12.00 USD`, `1,180 of 1,200 tokens`, `40 of 40 requests`: the spend against one limit."""
        unit = _UNITS[limit]
        used, allowed = getattr(self.spent, unit), getattr(self.limits, limit, None) or 0
        if unit != "cost":
            return f"{int(used):,} of {int(allowed):,} {unit}"
        digits = 2 if allowed >= 1 else 4
        return f"{used:,.{digits}f} of {allowed:,.{digits}f} {self.currency}".rstrip()

    def brief(self) -> str | None:
        """What a progress line says of the spend: `1.23 of 12.00 USD`, `0.0042 USD`, `9,100 of 20,000 tokens`;
        None with neither prices nor a limit."""
        limits = self.limits
        if self.currency:
            if limits is not None and limits.max_cost is not None:
                return self.spent_of("max_cost")
            cost = self.spent.cost
            return f"{cost:,.{2 if cost >= 1 or cost == 0 else 4}f} {self.currency}"
        for limit in ("max_tokens", "max_requests"):
            if limits is not None and getattr(limits, limit) is not None:
                return self.spent_of(limit)
        return None

    def reached(self, error: BudgetReached, written: int, total: int) -> BudgetReached:
        """`error` with the message the run stops with, once it has stopped: what was spent (the requests that
        were in flight included), what is written, and what to do."""
        error.args = (
            f"budget reached: {self.spent_of(error.limit)} spent; {written:,} of {total:,} records written; "
            f"raise run.budget.{error.limit} and run the same command to resume",
        )
        return error


def spend_from_manifest(manifest: Mapping[str, Any] | None) -> Spend:
    """What the runs a manifest records were charged. A manifest without `spend` (written before the budget
    existed) is charged what its token ledger reported."""
    manifest = manifest or {}
    if isinstance(manifest.get("spend"), dict):
        return Spend.from_dict(manifest["spend"])
    ledger = manifest.get("ledger")
    totals = ledger.get("totals") if isinstance(ledger, dict) else None
    if not isinstance(totals, dict):
        return Spend()
    tokens = totals.get("total_tokens", 0)
    return Spend.from_dict({"cost": totals.get("cost", 0.0), "tokens": tokens, "requests": totals.get("requests", 0)})
