"""The report's tokens and money: the ledger table (this run per column, model and endpoint, dropped rows, every
run into the folder), the spend against the budget, and tokens and cost per column over time.

Reads `summary.json`'s `ledger`, `ledger_all_runs` and `spend`, and the run's `RequestCompleted` events; costs
over time are priced with the prices the ledger recorded, so they add up to its totals.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from rowloom.config.pricing import Pricing

LEDGER_PLOT_ID = "plot-spend"

_FIELDS = (
    ("requests", "requests"),
    ("prompt", "prompt_tokens"),
    ("cached", "cached_tokens"),
    ("completion", "completion_tokens"),
    ("reasoning", "reasoning_tokens"),
    ("unknown usage", "unknown_usage"),
    ("abandoned", "abandoned"),
)


def _money(value: Any) -> str:
    value = float(value or 0.0)
    return f"{value:,.2f}" if value >= 1 or value == 0 else f"{value:,.4f}"


def ledger_table(summary: Mapping[str, Any]) -> str:
    """The token ledger (docs/observability.md), with a cost column when the models had prices, and the spend
    against the run's budget; a note when the summary predates the ledger."""
    ledger = summary.get("ledger")
    if not isinstance(ledger, Mapping):
        return "<h2>Tokens</h2><p class='note' id='ledger'>This summary has no token ledger.</p>"
    currency = ledger.get("currency")
    rows: list[tuple[str, Any]] = [("this run", ledger.get("totals"))]
    for section, label in (("by_column", "column"), ("by_model", "model"), ("by_endpoint", "endpoint")):
        rows += [(f"{label} {name}", counts) for name, counts in (ledger.get(section) or {}).items()]
    rows.append(("spent on dropped rows", ledger.get("dropped_rows")))
    if summary.get("ledger_all_runs") not in (None, ledger):
        rows.append(("all runs into the folder", summary["ledger_all_runs"].get("totals")))
    fields = [*_FIELDS, *([(f"cost ({currency})", "cost")] if currency else [])]
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(label)}</th>" for label, _ in fields) + "</tr>"
    body = []
    for label, counts in rows:
        counts = counts if isinstance(counts, Mapping) else {}
        cells = [_money(counts.get(key)) if key == "cost" else f"{int(counts.get(key) or 0):,}" for _, key in fields]
        body.append(f"<tr><th>{html.escape(label)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    prices = (
        "Costs use the prices the config gave."
        if currency
        else "The models had no prices, so the ledger counts tokens only: add <code>pricing</code> to a model."
    )
    note = (
        "<p class='note'>Cached tokens are part of the prompt, reasoning tokens part of the completion. Unknown "
        "usage: replies without a usage block; abandoned: attempts cancelled in flight. Their tokens are unknown, "
        f"not zero. {prices}</p>"
    )
    return f"<h2>Tokens</h2><table id='ledger' class='grid'>{head}{''.join(body)}</table>{note}{_spend(summary)}"


def _spend(summary: Mapping[str, Any]) -> str:
    """What the budget charged (the worst case of attempts whose usage is unknown included) against its limits."""
    spend = summary.get("spend")
    if not isinstance(spend, Mapping) or not isinstance(spend.get("all_runs"), Mapping):
        return ""
    limits = spend.get("limits") or {}
    currency = spend.get("currency") or ""
    charged = spend["all_runs"]
    rows = []
    for unit, limit, label in (
        ("cost", "max_cost", f"cost ({currency})" if currency else ""),
        ("tokens", "max_tokens", "tokens"),
        ("requests", "max_requests", "requests"),
    ):
        if not label or (unit != "cost" and limit not in limits):
            continue
        value = _money(charged.get(unit)) if unit == "cost" else f"{int(charged.get(unit) or 0):,}"
        allowed = limits.get(limit)
        if allowed is not None:
            value += f" of {_money(allowed) if unit == 'cost' else f'{int(allowed):,}'} (run.budget.{limit})"
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>")
    if not rows:
        return ""
    return (
        "<h3>Spend, every run into the folder</h3>"
        f"<table id='spend' class='kv'>{''.join(rows)}</table>"
        "<p class='note'>What the budget charged: reported usage, and the worst case of attempts the provider may "
        "have billed without saying (replies without usage, timeouts, replies cut off).</p>"
    )


#: Points kept per column: past this, every other point is dropped (the curves are cumulative, the last stays).
MAX_SPEND_POINTS = 2_000


class SpendSeries:
    """Per column (a request's admission group), fed one event at a time: event times, cumulative tokens and
    cumulative cost (zero without prices) of its replies that reported usage, in at most `MAX_SPEND_POINTS` points."""

    def __init__(self, prices: Mapping[str, Any] | None):
        given = (prices or {}).items()
        self.priced = {alias: Pricing.model_validate(p) for alias, p in given if isinstance(p, Mapping)}
        self.columns: dict[str, tuple[list[float], list[float], list[float]]] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        if event.get("kind") != "request_completed" or not event.get("usage_known"):
            return
        prompt, completion = int(event.get("prompt_tokens") or 0), int(event.get("completion_tokens") or 0)
        price = self.priced.get(str(event.get("alias")))
        cost = price.cost(prompt, completion, int(event.get("cached_tokens") or 0)) if price else 0.0
        times, tokens, costs = self.columns.setdefault(str(event.get("group")), ([], [], []))
        times.append(float(event["ts"]))
        tokens.append((tokens[-1] if tokens else 0) + prompt + completion)
        costs.append((costs[-1] if costs else 0.0) + cost)
        if len(times) > MAX_SPEND_POINTS:
            keep = [*range(0, len(times) - 1, 2), len(times) - 1]
            for points in (times, tokens, costs):
                points[:] = [points[i] for i in keep]

    def series(self, origin: float) -> dict[str, tuple[list[float], list[float], list[float]]]:
        """Per column: (seconds from `origin`, cumulative tokens, cumulative cost)."""
        return {c: ([t - origin for t in times], tokens, costs) for c, (times, tokens, costs) in self.columns.items()}


def spend_series(
    events: Iterable[Mapping[str, Any]], origin: float, prices: Mapping[str, Any] | None
) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """`SpendSeries` of `events`: per column, event times (seconds from `origin`), cumulative tokens and
    cumulative cost (zero without prices) of its replies that reported usage."""
    spend = SpendSeries(prices)
    for event in events:
        spend.feed(event)
    return spend.series(origin)


def spend_figure(series: Mapping[str, tuple[list[float], list[float], list[float]]], currency: str | None) -> Any:
    """Tokens (and, with prices, cost) per column over time, as a plotly figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = 2 if currency else 1
    titles = ["tokens, cumulative"] + ([f"cost ({currency}), cumulative"] if currency else [])
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles)
    for column, (times, tokens, costs) in sorted(series.items()):
        fig.add_trace(go.Scatter(x=times, y=tokens, name=column, legendgroup=column, mode="lines"), row=1, col=1)
        if currency:
            fig.add_trace(
                go.Scatter(x=times, y=costs, name=column, legendgroup=column, showlegend=False, mode="lines"),
                row=2,
                col=1,
            )
    fig.update_yaxes(title_text="tokens", rangemode="tozero", row=1, col=1)
    if currency:
        fig.update_yaxes(title_text=currency, rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="seconds since job start", row=rows, col=1)
    fig.update_layout(height=300 + 220 * rows)
    return fig
