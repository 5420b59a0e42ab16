"""The `rowloom` command: run, preview, validate, sim.

Errors a user can cause print one clear message and exit non-zero; only bugs show a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer

from rowloom.bench.sim_cli import sim
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.engine.output_location import redact
from rowloom.engine.progress import RunProgress
from rowloom.engine.resume import Action, check_output
from rowloom.errors import ConfigError, RowloomError, RunAborted, RunInterrupted
from rowloom.interface.bench_cli import bench_app
from rowloom.interface.export_cli import export_app
from rowloom.interface.output import CliConsole, print_records
from rowloom.interface.progress import ProgressDisplay
from rowloom.observe.sinks import EventSink, FanoutSink, JsonlSink

app = typer.Typer(
    name="rowloom",
    help="Generate synthetic datasets with LLMs, keeping every endpoint as busy as it can bear.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: option names whole at any width, no <bool> on flags
)
console = CliConsole(stderr=True)
out = CliConsole()

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class ResumeChoice(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class ExecutorChoice(StrEnum):
    local = "local"
    ray = "ray"


ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).", show_default=False, metavar="CONFIG")]


def _load(path: Path) -> DatasetConfig:
    try:
        return DatasetConfig.from_yaml(path)
    except ConfigError as exc:
        console.print(f"[red]Invalid config[/red] {path}:\n{exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None


@contextlib.contextmanager
def _simulators(config: DatasetConfig, spec: str | None) -> Iterator[None]:
    """Start a provider simulator on the port of every loopback provider (for demos and benchmarks)."""
    if spec is None:
        yield
        return
    from rowloom.bench.sim_config import SimulatorConfig
    from rowloom.bench.sim_process import SimulatorProcess, SimulatorProcessError

    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"{item!r} is not key=value (e.g. latency_s=0.2,capacity=16)", param_hint="--with-sim"
            )
        options[key.strip()] = value.strip()
    for listed in ("capacity_schedule", "outages"):  # list values separate their entries with ';' here
        if listed in options:
            options[listed] = options[listed].replace(";", ",")
    try:
        sim_config = SimulatorConfig(models=tuple({m.model for m in config.models}) or ("sim-model",), **options)
    except Exception as exc:
        raise typer.BadParameter(str(exc), param_hint="--with-sim") from None
    with contextlib.ExitStack() as stack:
        ports = set()
        for provider in config.providers:
            url = urlparse(provider.base_url)
            if url.hostname in ("127.0.0.1", "localhost") and url.port and url.port not in ports:
                ports.add(url.port)
                try:
                    stack.enter_context(SimulatorProcess(sim_config, port=url.port))
                except SimulatorProcessError as exc:
                    console.print(f"[red]Cannot start the simulator on port {url.port}[/red]: {exc}", highlight=False)
                    raise typer.Exit(EXIT_ERROR) from None
                console.print(f"simulator on 127.0.0.1:{url.port} ({sim_config.mode}, capacity {sim_config.capacity})")
        yield


@contextlib.contextmanager
def _metrics_endpoint(port: int | None, host: str) -> Iterator[EventSink | None]:
    """With a port: a Prometheus sink for the run, served over HTTP until the run ends."""
    if port is None:
        yield None
        return
    from rowloom.observe.prometheus import MetricsServer, PrometheusSink

    sink = PrometheusSink()
    server = MetricsServer(sink.registry, port, host)
    try:
        server.start()
    except OSError as exc:
        console.print(f"[red]Cannot serve metrics on {host}:{port}[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    console.print(f"metrics on {server.url}", highlight=False)
    try:
        yield sink
    finally:
        server.stop()


def _sink(events: Path | None, metrics: EventSink | None) -> EventSink | None:
    sinks: list[EventSink] = [*([JsonlSink(events)] if events else []), *([metrics] if metrics else [])]
    return FanoutSink(sinks) if sinks else None


async def _run(
    config: DatasetConfig,
    num_records: int,
    output: str,
    resume: str,
    events: Path | None,
    display: ProgressDisplay | None,
    metrics: EventSink | None = None,
) -> dict:
    loop = asyncio.get_running_loop()

    def on_start(scheduler, stats) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, scheduler.stop, "interrupted")
        if display is not None:
            display.stats = stats

    progress = display.progress if display is not None else None
    result = await run_job(
        config,
        num_records,
        output=output,
        resume=resume,
        sink=_sink(events, metrics),
        progress=progress,
        on_start=on_start,
    )
    return result.summary


def _run_on_ray(config, num_records, output, resume, events, display, metrics, ray_address, workers) -> dict:
    """A run on Ray workers; the display follows the parts and events the workers deliver."""
    from rowloom.engine.distributed.ray_executor import run_distributed

    def on_start(stats) -> None:
        if display is not None:
            display.stats = stats

    result = run_distributed(
        config,
        num_records,
        output=output,
        resume=resume,
        sink=_sink(events, metrics),
        workers=workers,
        ray_address=ray_address,
        progress=display.progress if display is not None else None,
        on_start=on_start,
    )
    return result.summary


@app.command()
def run(
    config_path: ConfigArg,
    num_records: Annotated[int, typer.Option("--num-records", "-n", min=1, help="Records to generate.")],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Output folder (Parquet + manifest): a local path or a pyarrow.fs URI (s3://…)."
        ),
    ],
    resume: Annotated[
        ResumeChoice,
        typer.Option(
            help="auto: continue an unfinished run in --output, or extend it to a larger -n; "
            "always: insist on a run to continue; never: only start new runs."
        ),
    ] = ResumeChoice.auto,
    events: Annotated[Path | None, typer.Option(help="Write every scheduling event to this JSONL file.")] = None,
    with_sim: Annotated[
        str | None,
        typer.Option(
            "--with-sim",
            help="Start the provider simulator on each loopback provider's port, e.g. 'latency_s=0.2,capacity=16'.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=0, max=65535, help="Serve live Prometheus metrics at http://HOST:PORT/metrics."
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Interface for --metrics-port (default: loopback only).")
    ] = "127.0.0.1",
    executor: Annotated[
        ExecutorChoice, typer.Option(help="'ray' spreads row groups over Ray workers (needs rowloom's 'ray' extra).")
    ] = ExecutorChoice.local,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster to join ('auto' or ADDRESS); default: start one.")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Ray worker actors (default: CPUs).")] = None,
) -> None:
    """Generate a dataset: one Parquet file per row group, plus manifest.json and summary.json."""
    config = _load(config_path)
    display = ProgressDisplay(console, RunProgress()) if not quiet else None
    try:
        decision = check_output(output, config, num_records, resume.value)  # before any server or display starts
        if decision.action is Action.DONE:  # a folder holding this complete run is left as it is
            out.print(decision.message, highlight=False)
            return
        with (
            _simulators(config, with_sim),
            _metrics_endpoint(metrics_port, metrics_host) as metrics,
            display if display is not None else contextlib.nullcontext(),
        ):
            if executor is ExecutorChoice.ray:
                summary = _run_on_ray(
                    config, num_records, output, resume.value, events, display, metrics, ray_address, workers
                )
            else:
                summary = asyncio.run(_run(config, num_records, output, resume.value, events, display, metrics))
    except RunAborted as exc:
        console.print(f"[yellow]Stopped[/yellow]: {exc}", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED if isinstance(exc, RunInterrupted) else EXIT_ERROR) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/yellow]; every finished row group is on disk.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RowloomError as exc:
        console.print(f"[red]Error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    dropped = summary["rows_dropped"]
    requests = summary["requests"]
    out.print(
        f"Wrote {summary['records_written']} records to {redact(output)} in {summary['wall_s']:.1f}s "
        f"({dropped} rows dropped, {requests.get('total', 0)} requests, "
        f"{requests.get('by_outcome', {}).get('rate_limited', 0)} rate-limited)",
        highlight=False,
    )


@app.command()
def preview(
    config_path: ConfigArg,
    num_records: Annotated[int, typer.Option("--num-records", "-n", min=1, max=1000)] = 5,
) -> None:
    """Generate a few records and print them as a table; nothing is written."""
    config = _load(config_path)
    try:
        result = asyncio.run(run_job(config, num_records, output=None))
    except RowloomError as exc:
        console.print(f"[red]Error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    frame = result.to_pandas()
    print_records(out, [str(name) for name in frame.columns], [[_cell(v) for v in row] for _, row in frame.iterrows()])
    if result.summary["rows_dropped"]:
        out.print(f"{result.summary['rows_dropped']} rows dropped: {result.summary['rows_dropped_by_reason']}")


def _cell(value: object) -> str:
    text = str(value)
    return text if len(text) <= 400 else text[:400] + "…"


@app.command()
def validate(config_path: ConfigArg) -> None:
    """Check a config and report every problem with its field path, or say it is valid."""
    config = _load(config_path)
    llm = sum(1 for c in config.columns if c.model_alias)
    out.print(
        f"{config_path} is valid: {len(config.columns)} columns ({llm} LLM), "
        f"{len(config.models)} models, {len(config.providers)} providers."
    )


JobOption = Annotated[str | None, typer.Option(help="Job id, when the log holds several runs (default: the last).")]


@app.command()
def trace(
    events: Annotated[Path, typer.Argument(help="Events log written by 'rowloom run --events'.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Trace file (default: trace.json beside the events).")
    ] = None,
    job: JobOption = None,
) -> None:
    """Convert an events log into Chrome trace-event JSON; open it at ui.perfetto.dev."""
    from rowloom.observe.perfetto import write_trace

    target = output or events.with_name("trace.json")
    try:
        path = write_trace(_read_events(events), target, job=job)
    except ValueError as exc:
        console.print(f"[red]Error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    out.print(f"Wrote {path} (open it at https://ui.perfetto.dev)", highlight=False)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="The --output folder of a run.", show_default=False)],
    events: Annotated[
        Path | None, typer.Option(help="Events log (default: OUT_DIR/events.jsonl when it exists).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default: OUT_DIR/report.html).")
    ] = None,
    job: JobOption = None,
) -> None:
    """Render one self-contained HTML report of a run: summary, in-flight vs limit, utilisation, idle breakdown."""
    from rowloom.observe.report import ReportError, render_report

    if events is not None:
        _read_events(events)  # a clear error for a missing or corrupt log, before any rendering
    try:
        path = render_report(out_dir, events=events, output=output, job=job)
    except (ReportError, ValueError) as exc:
        console.print(f"[red]Error[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    out.print(f"Wrote {path}", highlight=False)


def _read_events(path: Path) -> list[dict]:
    from rowloom.observe.sinks import read_jsonl

    try:
        return read_jsonl(path)
    except FileNotFoundError:
        console.print(f"[red]Error[/red]: events file {path} not found", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    except ValueError as exc:  # orjson.JSONDecodeError
        console.print(f"[red]Error[/red]: {path} is not an events log (JSON lines): {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None


app.command("sim", help="Run the OpenAI-compatible provider simulator on 127.0.0.1.")(sim)
app.add_typer(bench_app, name="bench")
app.add_typer(export_app)


def main() -> None:
    """Entry point of the `rowloom` script."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/yellow]")
        sys.exit(EXIT_INTERRUPTED)
