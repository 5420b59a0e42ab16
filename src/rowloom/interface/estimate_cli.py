"""`rowloom estimate CONFIG -n N [--sample K]`: what a run will take before it spends anything.

Registered in the main CLI with one line (`app.command("estimate")(estimate_cli.estimate)`). Owns the command's
options, its table and its `--json` file; the figures come from `rowloom.engine.estimate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rowloom.concurrency.loops import run as run_loop
from rowloom.engine.estimate import DEFAULT_ROWS, Estimate, EstimateArgumentError, Span, Usage
from rowloom.engine.estimate import estimate as run_estimate
from rowloom.engine.estimate.passes import check_arguments
from rowloom.errors import RowloomError
from rowloom.interface import messages
from rowloom.interface.output import Grid, plural, print_grid
from rowloom.interface.with_sim import WithSimOption, simulators

EXIT_ERROR = 1
#: The approximation's measured error, as docs/estimate.md reports it (benchmarks/estimate_accuracy.py).
APPROXIMATION_NOTE = "see docs/estimate.md for its measured error"


def estimate(
    config_path: Annotated[
        Path, typer.Argument(help="Dataset config (YAML or JSON).", show_default=False, metavar="CONFIG")
    ],
    num_records: Annotated[int, typer.Option("--num-records", "-n", help="Records the run would generate.")],
    rows: Annotated[
        int | None,
        typer.Option("--rows", help="Rows whose prompts are rendered dry (default: min(N, 50)).", show_default=False),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            help="Also run K real rows (written nowhere; they are paid for) to measure completions, retries, "
            "re-asks and latency.",
        ),
    ] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the estimate as JSON to this file.", show_default=False)
    ] = None,
    with_sim: WithSimOption = None,
    allow_import: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-import",
            metavar="MODULE",
            help="Import custom/validation functions only from MODULE (and its submodules); repeat for more.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Estimate a run before spending: requests, prompt and completion tokens, cost and wall time per column.

    Without --sample no generation request is sent: prompts are rendered and counted, completions are their
    worst case (max_tokens). With --sample K, K real rows replace the worst case by measured figures.
    """
    from rowloom.interface.cli import _load  # the main CLI imports this module: loaded when the command runs

    try:
        check_arguments(num_records, rows, sample)
    except EstimateArgumentError as exc:
        messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    config = _load(config_path, allow_import)
    dry_rows = rows or min(num_records, DEFAULT_ROWS)
    messages.status(
        f"rendering {plural(dry_rows, 'row')} dry"
        + (f", then running {plural(sample, 'real row')} (written nowhere)" if sample else "")
    )
    try:
        with messages.engine_warnings(), simulators(config, with_sim):
            result = run_loop(run_estimate(config, num_records, rows=rows, sample=sample))
    except RowloomError as exc:
        messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    show(result)
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        except OSError as exc:
            messages.error(f"cannot write {json_path}: {exc.strerror or exc}; pick another --json path")
            raise typer.Exit(EXIT_ERROR) from None
        messages.result(f"wrote {json_path}")


def show(result: Estimate) -> None:
    """The estimate as a table per column with totals, then how it was counted, the endpoints and the notes."""
    measured = result.sample_rows > 0
    cost_header = f"cost ({result.currency})" if result.currency else "cost"
    headers = ["column", "model", "requests", "prompt tokens", "completion tokens", cost_header]
    if measured:
        headers.append("prompt tokens (dry)")
    lines = [_row(c.column, c.model or "", c.best, c.dry, measured) for c in result.columns]
    lines.append(_row("total", "", result.total, result.total_dry, measured))
    how = f"{plural(result.rows_rendered, 'row')} rendered dry"
    if measured:
        how += f", {plural(result.sample_rows, 'real row')} sampled (range: mean ± 2 standard errors)"
    else:
        how += "; completions at their worst case (max_tokens)"
    print_grid(messages.stdout, Grid(f"estimate for {result.records} records ({how})", headers, lines))
    for alias, method in result.counted_by.items():
        note = f" ({APPROXIMATION_NOTE})" if method.startswith("approximation") else ""
        messages.result(f"prompt tokens of {alias}: {method}{note}")
    if result.currency is None:
        messages.result("no prices: tokens only (give every model in use `pricing:` to see costs)")
    for endpoint in result.endpoints:
        configured = endpoint.concurrency_configured
        line = f"endpoint {endpoint.endpoint}: {_number(endpoint.requests)} requests, concurrency {configured}"
        if endpoint.concurrency_learned is not None and endpoint.concurrency_learned != configured:
            line += f" (learned {endpoint.concurrency_learned})"
        if endpoint.mean_latency_s is not None:
            line += f", mean latency {endpoint.mean_latency_s:.3g} s"
        if endpoint.wall_s is not None:
            line += f", {_seconds(endpoint.wall_s)}"
        messages.result(line)
    if result.wall_s is not None:
        messages.result(f"expected wall time: {_seconds(result.wall_s)} (bottleneck: {result.bottleneck})")
    if result.sample_rows_dropped:
        messages.result(
            f"{plural(result.sample_rows_dropped, 'sample row')} dropped; their requests are counted (they are paid)"
        )
    for note in result.notes:
        messages.result(f"note: {note}")


def _row(name: str, model: str, best: Usage, dry: Usage, measured: bool) -> list[str]:
    cost = "-" if best.cost is None else _span(best.cost, money=True)
    row = [name, model, _span(best.requests), _span(best.prompt_tokens), _span(best.completion_tokens), cost]
    if measured:
        row.append(_span(dry.prompt_tokens))
    return row


def _number(span: Span, money: bool = False) -> str:
    value = span.point
    return f"{value:,.4f}" if money and value < 1 else f"{value:,.2f}" if money else f"{round(value):,}"


def _span(span: Span, money: bool = False) -> str:
    """`1,234` when exact, `~1,234 (1,100–1,350)` with an expected value, else `1,100–1,350`."""

    def fmt(value: float) -> str:
        return _number(Span.exact(value), money)

    if fmt(span.low) == fmt(span.high):
        return fmt(span.high)
    if span.expected is None:
        return f"{fmt(span.low)}–{fmt(span.high)}"
    return f"~{fmt(span.expected)} ({fmt(span.low)}–{fmt(span.high)})"


def _seconds(span: Span) -> str:
    def fmt(value: float) -> str:
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"

    if fmt(span.low) == fmt(span.high):
        return f"~{fmt(span.point)}"
    return f"~{fmt(span.point)} ({fmt(span.low)}–{fmt(span.high)})"
