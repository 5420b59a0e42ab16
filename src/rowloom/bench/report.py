"""The benchmark report: one self-contained HTML page (plotly inlined) over a `bench.json` document.

Shares the run report's page style; owns only the per-scenario figures.
"""

from __future__ import annotations

import html
from typing import Any

from rowloom.bench import suite
from rowloom.observe.report import html_page

_IDLE = {
    "rate_limited": ("rate-limited", "#d62728"),
    "admission_blocked": ("admission-blocked", "#ff7f0e"),
    "frontier_limited": ("frontier-limited", "#9467bd"),
    "no_ready_work": ("no ready work", "#7f7f7f"),
}


def _table(document: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in suite.TABLE_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in suite.table_rows(document)
    )
    return f"<table id='bench-table'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _figure(fig: Any, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)


def render_bench_report(document: dict[str, Any]) -> str:
    """HTML for a bench document: the table, span vs ideal, utilisation, the idle split, CPU and memory."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    done = {n: r for n, r in document["scenarios"].items() if r.get("status") == "completed"}
    names = list(done)
    parts = [f"<h1>rowloom bench{' (quick set)' if document.get('quick') else ''}</h1>", _table(document)]

    ratio = [done[n].get("span_over_ideal") for n in names]
    fig = go.Figure(go.Bar(x=names, y=ratio, marker_color="#1f77b4", name="span ÷ ideal"))
    fig.add_hline(y=1.10, line_dash="dash", line_color="#d62728", annotation_text="1.10")
    fig.update_layout(title="Generation span ÷ ideal bound", yaxis_title="×", height=380)
    parts.append(_figure(fig, "plot-span"))

    fig = go.Figure(go.Bar(x=names, y=[done[n].get("utilisation") for n in names], marker_color="#2ca02c"))
    fig.update_layout(title="Endpoint utilisation (mean in flight ÷ capacity while it has work)", height=380)
    parts.append(_figure(fig, "plot-utilisation"))

    fig = go.Figure()
    for reason, (label, colour) in _IDLE.items():
        fig.add_bar(
            x=names, y=[done[n].get("idle_slot_s", {}).get(reason, 0.0) for n in names], name=label, marker_color=colour
        )
    fig.update_layout(
        barmode="stack", title="Idle model capacity by cause (slot-seconds, against the true capacity)", height=400
    )
    parts.append(_figure(fig, "plot-idle"))

    fig = go.Figure()
    fig.add_bar(x=names, y=[done[n].get("client_cpu_ms_per_request") for n in names], name="client CPU ms/request")
    fig.update_layout(title="Client CPU per request (ms)", height=360)
    parts.append(_figure(fig, "plot-cpu"))

    fig = go.Figure(go.Bar(x=names, y=[done[n].get("peak_rss_mb") for n in names], marker_color="#8c564b"))
    fig.update_layout(title="Peak RSS of the rowloom process (MB)", height=360)
    parts.append(_figure(fig, "plot-rss"))
    return html_page("rowloom bench", parts, f"<script>{get_plotlyjs()}</script>")
