"""The run report: one self-contained HTML file (plotly inlined) that says where a run's time went.

Reads `summary.json` from the output folder and, when recorded, the events log, streamed one event at a time (a log
of any size renders in bounded memory); the numbers come from the run's one timeline (`observe.timeline`), as the
trace's and the benchmarks' do. Owns rendering only.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rowloom.observe.event_log import file_lines, replay
from rowloom.observe.report_ledger import LEDGER_PLOT_ID, SpendSeries, ledger_table, spend_figure
from rowloom.observe.series import MAX_STEPS, Series
from rowloom.observe.timeline import IDLE_CAUSES, Timeline
from rowloom.observe.timeline_builder import TimelineBuilder

PLOT_IDS = ("plot-inflight", "plot-utilisation", "plot-frontier", "plot-idle")
_IDLE_COLOURS = {
    "rate_limited": "#d62728",
    "admission_blocked": "#ff7f0e",
    "frontier_limited": "#9467bd",
    "no_ready_work": "#7f7f7f",
}
_IDLE_LABELS = {
    "rate_limited": "rate-limited",
    "admission_blocked": "admission-blocked",
    "frontier_limited": "frontier-limited",
    "no_ready_work": "no ready work",
}


class ReportError(ValueError):
    """The output folder cannot be reported on (no summary.json, unreadable events)."""


def render_report(
    out_dir: str | Path,
    *,
    events: str | Path | None = None,
    output: str | Path | None = None,
    job: str | None = None,
) -> Path:
    """Write the HTML report of the run in `out_dir`; returns its path (default `out_dir/report.html`).

    `events` defaults to `out_dir/events.jsonl` when that file exists; without events only the summary is shown.
    """
    folder = Path(out_dir)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ReportError(f"{summary_path} not found: is {folder} the --output folder of a run?")
    summary = json.loads(summary_path.read_text())
    events_path = Path(events) if events is not None else folder / "events.jsonl"
    lines = None
    if events is not None or events_path.is_file():
        if not events_path.is_file():
            raise ReportError(f"events file {events_path} not found")
        lines = file_lines(events_path)
    target = Path(output) if output is not None else folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report_html(summary, lines, job=job, name=folder.resolve().name))
    return target


def report_html(summary: Mapping[str, Any], lines: Callable[[], Any] | None, *, job: str | None, name: str) -> str:
    """The report of a run from its summary and its events log (None: not recorded), titled with its folder's
    name. `lines()` opens the log's lines afresh (`event_log.file_lines`): the log is streamed, never held."""
    if lines is None:
        return render_html(summary, None, title=f"rowloom run report — {name}")
    ledger = summary.get("ledger") if isinstance(summary.get("ledger"), Mapping) else {}

    def build(events: Iterable[Mapping[str, Any]]) -> tuple[Timeline, SpendSeries]:
        timeline, spend = TimelineBuilder(), SpendSeries(ledger.get("prices"))
        for event in events:
            timeline.feed(event)
            spend.feed(event)
        return timeline.finish(), spend

    timeline, spend = replay(lines, build, job)
    return render_html(summary, timeline, title=f"rowloom run report — {name}", spend=spend.series(timeline.origin))


def render_html(
    summary: Mapping[str, Any],
    timeline: Timeline | None,
    *,
    title: str = "rowloom run report",
    spend: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML document: summary tables, and the plots when a timeline is given (with `spend`,
    the `report_ledger.spend_series` of its events: tokens and cost per column over time)."""
    parts = [f"<h1>{html.escape(title)}</h1>", _summary_table(summary, timeline), ledger_table(summary)]
    if timeline is None:
        parts.append(
            '<p class="note" id="no-events">Events were not recorded for this run, so there are no plots. '
            "Run with <code>--events OUT/events.jsonl</code> to see in-flight requests, limits, utilisation, "
            "the frontier and where idle capacity went.</p>"
        )
        head_js = ""
    else:
        from plotly.offline import get_plotlyjs

        head_js = f"<script>{get_plotlyjs()}</script>"
        parts.append(_endpoint_table(timeline))
        parts.append(_outage_table(timeline))
        parts.extend(_plots(timeline))
        if spend:
            ledger = summary.get("ledger") if isinstance(summary.get("ledger"), Mapping) else {}
            figure = spend_figure(spend, ledger.get("currency"))
            parts.append(_plot_section(LEDGER_PLOT_ID, "Tokens and cost per column over time", figure))
        parts.append(_idle_rule())
    return html_page(title, parts, head_js)


def html_page(title: str, parts: Sequence[str], head_js: str = "") -> str:
    """A self-contained HTML page in the report's style (shared with the benchmark report)."""
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{head_js}</head>"
        f"<body>{body}</body></html>\n"
    )


# ------------------------------------------------------------------ tables


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _kv_table(rows: Sequence[tuple[str, str]], table_id: str) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table id='{table_id}' class='kv'>{cells}</table>"


def _counts(mapping: Mapping[str, Any] | None) -> str:
    if not mapping:
        return "none"
    return ", ".join(f"{k}: {v}" for k, v in sorted(mapping.items(), key=lambda kv: (-int(kv[1]), kv[0])))


def _summary_table(summary: Mapping[str, Any], timeline: Timeline | None) -> str:
    requests = summary.get("requests") or {}
    wall = summary.get("wall_s")
    if timeline is not None:
        ideal = timeline.ideal_wall_s()
        ideal_note = "slowest endpoint: requests × mean latency ÷ time-weighted mean limit"
    else:
        peak = requests.get("peak_in_flight") or 0
        total, latency = requests.get("total") or 0, requests.get("mean_latency_s") or 0.0
        ideal = total * latency / peak if peak else None
        ideal_note = "approximate: requests × mean latency ÷ peak in flight (no events recorded)"
    ratio = f" ({wall / ideal:.2f}× the ideal bound)" if ideal and wall else ""
    rows = [
        ("status", f"{summary.get('status', '?')}" + (f" — {summary['message']}" if summary.get("message") else "")),
        ("records written", f"{summary.get('records_written', 0)} of {summary.get('records_requested', '?')}"),
        ("records resumed", str(summary.get("records_resumed", 0))),
        ("rows dropped", str(summary.get("rows_dropped", 0))),
        ("drops by reason", _counts(summary.get("rows_dropped_by_reason"))),
        ("requests", str(requests.get("total", 0))),
        ("requests by outcome", _counts(requests.get("by_outcome"))),
        ("rate-limited share", f"{float(requests.get('rate_limited_share', 0.0)):.1%}"),
        ("endpoint outages", _outage_counts(summary.get("endpoints"))),
        ("reply cache", _cache_line(summary.get("cache"))),
        *[(f"batches of {alias}", _batch_line(counts)) for alias, counts in sorted(_batches(summary).items())],
        ("tokens", f"{int(requests.get('tokens', 0)):,}"),
        ("mean request latency", _fmt_s(requests.get("mean_latency_s"))),
        ("peak requests in flight", str(requests.get("peak_in_flight", 0))),
        ("wall time", _fmt_s(wall) + ratio),
        ("ideal bound", f"{_fmt_s(ideal)} ({ideal_note})"),
    ]
    if timeline is not None:
        idle = timeline.idle_totals()
        total_idle = sum(idle.values())
        split = ", ".join(
            f"{_IDLE_LABELS[c]} {idle[c] / total_idle:.0%}" for c in IDLE_CAUSES if total_idle and idle[c] > 0
        )
        rows.append(("idle request capacity", f"{total_idle:.1f} slot-s" + (f" ({split})" if split else "")))
    return "<h2>Summary</h2>" + _kv_table(rows, "summary")


def _batches(summary: Mapping[str, Any]) -> dict[str, Any]:
    batches = summary.get("batches")
    return dict(batches) if isinstance(batches, Mapping) else {}


def _batch_line(counts: Any) -> str:
    """One batch model's figures from `summary.json`'s `batches`: batches, lines, what was sent again, what failed."""
    counts = counts if isinstance(counts, Mapping) else {}

    def n(key: str) -> int:
        value = counts.get(key)
        return value if isinstance(value, int) else 0

    ended = ", ".join(
        f"{n(k):,} {k.removeprefix('batches_')}"
        for k in ("batches_completed", "batches_expired", "batches_cancelled", "batches_failed")
        if n(k)
    )
    line = f"{n('batches_submitted'):,} submitted ({ended or 'none ended'}), {n('batches_resumed'):,} resumed; "
    line += f"{n('lines_submitted'):,} lines sent ({n('lines_resubmitted'):,} again), "
    line += f"{n('requests_answered'):,} answered, {n('requests_failed'):,} given up"
    return line


def _cache_line(cache: Any) -> str:
    """Hits (requests saved, and what they would have cost) and misses of the reply cache; '—' without one."""
    if not isinstance(cache, Mapping) or not (cache.get("hits") or cache.get("misses")):
        return "—"
    line = f"{int(cache.get('hits') or 0):,} hits (requests saved), {int(cache.get('misses') or 0):,} misses"
    line += f"; {int(cache.get('tokens_saved') or 0):,} tokens saved"
    if cache.get("cost_saved") is not None and cache.get("currency"):
        line += f", {float(cache['cost_saved']):,.4f} {cache['currency']} saved"
    return line


def _endpoint_table(timeline: Timeline) -> str:
    head = (
        "<tr><th>endpoint</th><th>aliases</th><th>requests</th><th>outcomes</th><th>mean latency</th>"
        "<th>mean limit</th><th>max limit</th><th>peak in flight</th><th>utilisation</th><th>idle split</th></tr>"
    )
    rows = []
    for key, ep in sorted(timeline.endpoints.items()):
        idle_s = ep.idle_s()
        idle = sum(idle_s.values())
        split = ", ".join(f"{_IDLE_LABELS[c]} {idle_s[c] / idle:.0%}" for c in IDLE_CAUSES if idle and idle_s[c])
        cells = [
            key,
            ", ".join(sorted(ep.aliases)),
            str(ep.requests),
            _counts(ep.outcomes),
            _fmt_s(ep.mean_latency_s),
            f"{ep.limit.mean(0.0, timeline.end):.1f}",
            "—" if ep.max_limit is None else str(ep.max_limit),
            str(int(ep.in_flight.peak)),
            f"{timeline.utilisation(key):.0%}",
            split or "—",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<h2>Endpoints</h2><table id='endpoints' class='grid'>{head}{''.join(rows)}</table>"


def _outage_counts(endpoints: Mapping[str, Any] | None) -> str:
    down = {k: v for k, v in (endpoints or {}).items() if isinstance(v, Mapping) and v.get("outages")}
    if not down:
        return "none"
    return ", ".join(f"{k}: {v['outages']} ({_fmt_s(float(v.get('down_s') or 0.0))} down)" for k, v in down.items())


def _outage_table(timeline: Timeline) -> str:
    """Every stretch an endpoint was down (requests waited while it was probed), or a line saying there was none."""
    rows = [(key, outage) for key, ep in sorted(timeline.endpoints.items()) for outage in ep.outages]
    if not rows:
        return "<h2>Outages</h2><p class='note' id='outages'>No endpoint was down.</p>"
    head = (
        "<tr><th>endpoint</th><th>down at</th><th>back at</th><th>down for</th><th>probes</th><th>last error</th></tr>"
    )
    cells = []
    for key, o in rows:
        values = [
            key,
            f"{o.start:.1f} s",
            f"{o.end:.1f} s" if o.finished else "— (still down at the end)",
            _fmt_s(o.duration_s),
            "—" if o.probes is None else str(o.probes),
            o.last_error or "—",
        ]
        cells.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in values) + "</tr>")
    return f"<h2>Outages</h2><table id='outages' class='grid'>{head}{''.join(cells)}</table>"


def _idle_rule() -> str:
    return (
        "<h2>How idle capacity is attributed</h2><p class='note'>Idle capacity is <code>max(0, limit − in "
        "flight)</code> request slots of an endpoint, integrated over time (slot-seconds). Each idle moment is "
        "charged to the first cause that holds: <b>rate-limited</b> (the endpoint cools down, or a 429'd attempt "
        "waits out its Retry-After); <b>admission-blocked</b> (requests wait in the endpoint's queue, or tasks of "
        "its model pool wait in the ready queue); <b>frontier-limited</b> (nothing is queued but row groups are "
        "still waiting to be admitted); <b>no ready work</b> (every row group is admitted and nothing is queued: "
        "work waits on dependencies or other endpoints, typically the tail of the run).</p>"
    )


# ------------------------------------------------------------------ plots


def _step(series: Series, timeline: Timeline) -> tuple[list[float], list[float], str]:
    """Points for plotting a step series; long ones (beyond `MAX_STEPS`, where every step of a busy endpoint
    would only paint a solid block) are drawn as time-weighted means over the timeline's bins."""
    if series.exact and len(series.t) <= MAX_STEPS:
        x, y = series.steps(timeline.end)
        return x, y, "hv"
    x, y = series.resample(0.0, timeline.end, timeline.bins)
    return x, y, "linear"


def _plots(timeline: Timeline) -> list[str]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    end = timeline.end
    keys = sorted(timeline.endpoints)
    figures: list[tuple[str, str, Any]] = []

    n = max(1, len(keys))
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, subplot_titles=keys or ["no endpoints"])
    for row, key in enumerate(keys, start=1):
        ep = timeline.endpoints[key]
        first = row == 1
        for name, series, style in (
            ("adaptive limit", ep.limit, {"color": "#1f77b4", "width": 2}),
            ("in flight", ep.in_flight, {"color": "#2ca02c", "width": 1}),
            ("queued requests", ep.queued, {"color": "#ff7f0e", "width": 1, "dash": "dot"}),
        ):
            x, y, shape = _step(series, timeline)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    mode="lines",
                    line={**style, "shape": shape},
                ),
                row=row,
                col=1,
            )
        if ep.max_limit is not None:
            fig.add_trace(
                go.Scatter(
                    x=[0.0, end],
                    y=[ep.max_limit, ep.max_limit],
                    name="configured max",
                    legendgroup="configured max",
                    showlegend=first,
                    mode="lines",
                    line={"color": "#999999", "dash": "dash", "width": 1},
                ),
                row=row,
                col=1,
            )
        for outage in ep.outages:  # shaded: the endpoint was down, its requests waited for a probe to succeed
            fig.add_vrect(
                x0=outage.start, x1=outage.end, fillcolor="#d62728", opacity=0.15, line_width=0, row=row, col=1
            )
        fig.update_yaxes(title_text="requests", rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="seconds since job start", row=n, col=1)
    fig.update_layout(height=260 + 220 * n)
    figures.append(("plot-inflight", "Requests in flight vs the adaptive limit, per endpoint (shaded: down)", fig))

    fig = go.Figure()
    for key in keys:
        x, y = timeline.utilisation_series(key)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[v * 100 for v in y],
                name=f"{key} (mean {timeline.utilisation(key):.0%})",
                mode="lines",
                line={"shape": "hvh"},
            )
        )
    fig.update_layout(yaxis={"title": "busy share of the limit (%)", "range": [0, 105]}, height=360)
    fig.update_xaxes(title_text="seconds since job start")
    figures.append(("plot-utilisation", "Utilisation: in-flight requests as a share of the limit", fig))

    fig = go.Figure()
    for name, series, style in (
        ("frontier target", timeline.frontier_target, {"color": "#1f77b4", "width": 2}),
        ("row groups in flight", timeline.row_groups_in_flight, {"color": "#2ca02c", "width": 1}),
    ):
        x, y, shape = _step(series, timeline)
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line={**style, "shape": shape}))
    fig.update_layout(yaxis={"title": "row groups", "rangemode": "tozero", "dtick": 1}, height=320)
    fig.update_xaxes(title_text="seconds since job start")
    figures.append(("plot-frontier", "Frontier width: row groups admitted at once", fig))

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.3, 0.7],
        subplot_titles=["total by endpoint (slot-seconds)", "over time, all endpoints (idle slots)"],
    )
    edges = timeline.bin_edges()
    centres = [(edges[i] + edges[i + 1]) / 2 for i in range(timeline.bins)]
    width = timeline.width
    for cause in IDLE_CAUSES:
        colour, label = _IDLE_COLOURS[cause], _IDLE_LABELS[cause]
        fig.add_trace(
            go.Bar(
                x=keys,
                y=[timeline.endpoints[k].idle_s()[cause] for k in keys],
                name=label,
                legendgroup=cause,
                marker_color=colour,
            ),
            row=1,
            col=1,
        )
        bins = [timeline.idle_bins(k, cause) for k in keys]
        per_bin = [sum(b[i] for b in bins) / width for i in range(timeline.bins)]
        fig.add_trace(
            go.Scatter(
                x=centres,
                y=per_bin,
                name=label,
                legendgroup=cause,
                showlegend=False,
                stackgroup="idle",
                mode="lines",
                line={"width": 0.5, "color": colour},
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="stack", height=380)
    fig.update_yaxes(title_text="slot-seconds", row=1, col=1)
    fig.update_yaxes(title_text="idle request slots", row=1, col=2)
    fig.update_xaxes(title_text="seconds since job start", row=1, col=2)
    figures.append(("plot-idle", "Idle breakdown: where unused request capacity went", fig))

    return [_plot_section(div_id, heading, figure) for div_id, heading, figure in figures]


def _plot_section(div_id: str, heading: str, figure: Any) -> str:
    figure.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="plotly_white")
    snippet = figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True})
    return f"<section class='plot'><h2>{html.escape(heading)}</h2>{snippet}</section>"


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px 40px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.4em; }
table { border-collapse: collapse; font-size: 0.92em; }
table.kv th { text-align: left; padding: 3px 16px 3px 0; color: #555; font-weight: 600; }
table.kv td { padding: 3px 0; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
table.grid th { background: #f5f5f5; }
p.note { color: #444; max-width: 70em; line-height: 1.45; }
section.plot { margin-top: 0.5em; }
"""
