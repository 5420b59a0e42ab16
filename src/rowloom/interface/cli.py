"""The `rowloom` command: run, preview, validate, sim.

Errors a user can cause print one clear message and exit non-zero; only bugs show a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from rowloom.bench.sim_cli import sim
from rowloom.concurrency.loops import event_loop_factory
from rowloom.concurrency.loops import run as run_loop
from rowloom.config.checks import ConfigCheck, check_config, config_warnings
from rowloom.config.dataset import DatasetConfig, load_yaml_file
from rowloom.engine.job import restore_manifest, run_job
from rowloom.engine.output_location import redact
from rowloom.engine.progress import RunProgress
from rowloom.engine.resume import Action, check_output
from rowloom.errors import BudgetReached, ConfigError, ConfigProblem, RowloomError, RunInterrupted, UserCodeError
from rowloom.interface import messages
from rowloom.interface.batches_cli import batches_app, batches_left_running
from rowloom.interface.bench_cli import bench_app
from rowloom.interface.cache_cli import cache_app
from rowloom.interface.estimate_cli import estimate
from rowloom.interface.export_cli import export_app
from rowloom.interface.output import CliConsole, plural, print_records
from rowloom.interface.progress import ProgressDisplay
from rowloom.interface.usage import RowloomGroup
from rowloom.interface.user_code import describe
from rowloom.interface.with_sim import WithSimOption, simulators
from rowloom.models.cache import with_cache
from rowloom.observe.sinks import EventSink, FanoutSink, JsonlSink

app = typer.Typer(
    name="rowloom",
    help="Generate synthetic datasets with LLMs, keeping every endpoint as busy as it can bear.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: option names whole at any width, no <bool> on flags
    cls=RowloomGroup,  # help never broken at a hyphen; a usage mistake is one `error:` line
)
console = CliConsole(stderr=True)
out = CliConsole()

EXIT_ERROR = 1
EXIT_BUDGET = 3  # the run's budget stopped it: finished work is written, a raised budget resumes it
EXIT_INTERRUPTED = 130


class ResumeChoice(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class ExecutorChoice(StrEnum):
    local = "local"
    ray = "ray"


ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).", show_default=False, metavar="CONFIG")]


AllowImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-import",
        metavar="MODULE",
        help="Import custom/validation functions only from MODULE (and its submodules); repeat for more. "
        "Without it, a config may import and run any module.",
        show_default=False,
    ),
]


def _problem_line(source: Path, problem: ConfigProblem) -> str:
    """`bad.yaml: columns[3] (review).type: unknown column type 'llm_txt'; did you mean 'llm_text'? …`"""
    message = problem.message.rstrip(".")
    if message[:1].isupper() and message[1:2].islower():  # pydantic's "Field required"
        message = message[0].lower() + message[1:]
    if not problem.path or problem.path == str(source):
        where = f"{source}: "
    elif problem.path.startswith(f"{source}:"):  # a line and column in the file: `bad.yaml:3:1`
        where = f"{problem.path}: "
    else:
        where = f"{source}: {problem.path}: "
    return f"{where}{message}" + (f"; {problem.fix}" if problem.fix else "")


def _check(path: Path, allow_import: list[str] | None) -> ConfigCheck:
    """Every problem of the config at `path`, each printed as one `error:` line; exit 1 when there are any."""
    try:
        check = check_config(load_yaml_file(path), str(path), allow_imports=allow_import, switch="--allow-import")
    except ConfigError as exc:  # the file itself: missing, too large, not YAML
        check = ConfigCheck(None, exc.problems)
    if check.config is None:
        for problem in check.problems:
            messages.error(_problem_line(path, problem))
        if len(check.problems) > 1:
            messages.status(f"found {len(check.problems)} problems in {path}")
        raise typer.Exit(EXIT_ERROR)
    return check


def _load(path: Path, allow_import: list[str] | None = None) -> DatasetConfig:
    config = _check(path, allow_import).config
    assert config is not None
    return config


def _fail(exc: RowloomError, kept: str = "") -> NoReturn:
    """Print an error the user can act on (a custom column's crash with its own frames) and exit non-zero."""
    shown = describe(exc) if isinstance(exc, UserCodeError) else None
    if shown is not None:
        head, details = shown
        messages.error(head, *details[:-1], details[-1] + kept)
    else:
        messages.error(f"{exc}{kept}")
    raise typer.Exit(EXIT_ERROR) from None


def _kept(progress: RunProgress, output: str) -> str:
    """What a stopped run leaves on disk, said only when it wrote anything (a preview never does), and the
    batches it left running at the provider."""
    records = progress.records_resumed + progress.records_written
    kept = ""
    if records:
        kept = (
            f"; every finished row group is on disk ({records} records in {redact(output)}): "
            "run the same command again to resume"
        )
    return kept + batches_left_running(output)


@contextlib.contextmanager
def _metrics_endpoint(port: int | None, host: str, config: DatasetConfig) -> Iterator[EventSink | None]:
    """With a port: a Prometheus sink for the run (pricing usage at the config's prices), served over HTTP until
    the run ends."""
    if port is None:
        yield None
        return
    from rowloom.observe.prometheus import MetricsServer, PrometheusSink

    sink = PrometheusSink(prices={m.alias: m.prices for m in config.models})
    server = MetricsServer(sink.registry, port, host)
    try:
        server.start()
    except OSError as exc:
        messages.error(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; pick another --metrics-port")
        raise typer.Exit(EXIT_ERROR) from None
    messages.status(f"metrics on {server.url}")
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
    metrics: EventSink | None,
    progress: RunProgress,
) -> dict:
    loop = asyncio.get_running_loop()

    def on_start(scheduler, stats) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, scheduler.stop, "interrupted")
        if display is not None:
            display.stats = stats

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


def _run_on_ray(config, num_records, output, resume, events, display, metrics, progress, ray_address, workers) -> dict:
    """A run on Ray workers; the display follows the parts and events the workers deliver."""
    from rowloom.engine.distributed.ray_executor import run_distributed

    def on_start(stats) -> None:
        # Once Ray runs (ray.init makes SIGTERM exit at once): SIGTERM stops the run as Ctrl-C does, so the
        # parts delivered so far are listed and the summary says 'interrupted', as in a local run.
        signal.signal(signal.SIGTERM, _interrupt)
        if display is not None:
            display.stats = stats

    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = run_distributed(
            config,
            num_records,
            output=output,
            resume=resume,
            sink=_sink(events, metrics),
            workers=workers,
            ray_address=ray_address,
            progress=progress,
            on_start=on_start,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return result.summary


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    with_sim: WithSimOption = None,
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
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache", help="Reply cache folder (default: run.cache.path, $ROWLOOM_CACHE_DIR, else ~/.cache/rowloom)."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the reply cache: every request is sent.")
    ] = False,
    allow_import: AllowImportOption = None,
) -> None:
    """Generate a dataset: one Parquet file per row group, plus manifest.json and summary.json."""
    config = _load(config_path, allow_import)
    progress = RunProgress()  # also when quiet: what a stopped run wrote is told from it
    display = ProgressDisplay(console, progress) if not quiet else None
    try:
        config = with_cache(config, mode="off" if no_cache else None, path=cache)  # Ray workers get it resolved
        decision = check_output(output, config, num_records, resume.value)  # before any server or display starts
        if decision.action is Action.DONE:  # a folder holding this complete run is left as it is
            if decision.recovered_from:  # its manifest.json was lost in a move: put back
                with messages.engine_warnings():
                    restore_manifest(output, decision)
            messages.result(decision.message)
            return
        with (
            messages.engine_warnings(),
            simulators(config, with_sim),
            _metrics_endpoint(metrics_port, metrics_host, config) as metrics,
            display if display is not None else contextlib.nullcontext(),
        ):
            if executor is ExecutorChoice.ray:
                summary = _run_on_ray(
                    config, num_records, output, resume.value, events, display, metrics, progress, ray_address, workers
                )
            else:
                summary = run_loop(_run(config, num_records, output, resume.value, events, display, metrics, progress))
    except RunInterrupted as exc:
        messages.status(f"{exc}{_kept(progress, output)}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        messages.status(f"interrupted{_kept(progress, output)}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BudgetReached as exc:  # says what was spent and written, and how to go on
        messages.status(str(exc))
        raise typer.Exit(EXIT_BUDGET) from None
    except RowloomError as exc:  # RunAborted included: an endpoint that refuses the key, too many rows dropped
        _fail(exc, _kept(progress, output))
    dropped = summary["rows_dropped"]
    requests = summary["requests"]
    this_run = summary["records_written_this_run"]
    in_all = f" ({summary['records_written']} in all)" if this_run != summary["records_written"] else ""
    hits = summary.get("cache", {}).get("hits", 0)
    batched = sum(b.get("requests_answered", 0) for b in summary.get("batches", {}).values())
    messages.result(
        f"wrote {this_run} records to {redact(output)}{in_all} in {summary['wall_s']:.1f}s "
        f"({dropped} rows dropped, {requests.get('total', 0)} requests, "
        f"{requests.get('by_outcome', {}).get('rate_limited', 0)} rate-limited"
        + (f", {batched} answered in batches" if batched else "")
        + (f", {hits} replies from the cache)" if hits else ")")
    )


@app.command()
def preview(
    config_path: ConfigArg,
    num_records: Annotated[int, typer.Option("--num-records", "-n", min=1, max=1000)] = 5,
    allow_import: AllowImportOption = None,
) -> None:
    """Generate a few records and print them as a table; nothing is written."""
    config = _load(config_path, allow_import)
    try:
        result = run_loop(run_job(config, num_records, output=None))
    except RowloomError as exc:  # nothing was written: no word about the disk
        _fail(exc)
    frame = result.to_pandas()
    print_records(out, [str(name) for name in frame.columns], [[_cell(v) for v in row] for _, row in frame.iterrows()])
    if result.summary["rows_dropped"]:
        messages.result(f"{result.summary['rows_dropped']} rows dropped: {result.summary['rows_dropped_by_reason']}")


def _cell(value: object) -> str:
    text = str(value)
    return text if len(text) <= 400 else text[:400] + "…"


@app.command()
def validate(config_path: ConfigArg, allow_import: AllowImportOption = None) -> None:
    """Check a config and report every problem with its field path, or say it is valid and list the code it runs.

    A config is code: its custom and validation columns import and run Python functions, and validate imports
    them too (with --allow-import, only from the modules listed).
    """
    check = _check(config_path, allow_import)
    config = check.config
    assert config is not None
    for provider in config.providers:  # valid, yet the run would send no key: say so before it is refused
        if provider.type != "local" and provider.api_key_env and not os.environ.get(provider.api_key_env):
            messages.warning(
                f"providers.{provider.name}.api_key_env: {provider.api_key_env} is not set, so requests to "
                f"{provider.name} carry no API key; set it if the endpoint needs one"
            )
    for warning in config_warnings(config):
        messages.warning(warning)
    llm = sum(1 for c in config.columns if c.model_alias)
    messages.result(
        f"{config_path} is valid: {plural(len(config.columns), 'column')} ({llm} LLM), "
        f"{plural(len(config.models), 'model')}, {plural(len(config.providers), 'provider')}."
    )
    if check.code:  # trusted code: say which, so a config from elsewhere is read before it runs
        messages.result("code this config runs:")
        for function in check.code:
            messages.result(f"  {function.where}: {function.target} ({function.source})")


JobOption = Annotated[str | None, typer.Option(help="Job id, when the log holds several runs (default: the last).")]


@app.command()
def trace(
    events: Annotated[
        Path, typer.Argument(help="Events log written by 'rowloom run --events'.", show_default=False, metavar="EVENTS")
    ],
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
        messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    messages.result(f"wrote {path} (open it at https://ui.perfetto.dev)")


@app.command()
def report(
    out_dir: Annotated[
        str,
        typer.Argument(
            help="The --output folder of a run: a local path or a pyarrow.fs URI (file://…, s3://…), as run -o takes.",
            show_default=False,
            metavar="OUT_DIR",
        ),
    ],
    events: Annotated[
        Path | None, typer.Option(help="Events log (default: OUT_DIR/events.jsonl when it exists).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default: OUT_DIR/report.html).")
    ] = None,
    job: JobOption = None,
) -> None:
    """Render one self-contained HTML report of a run: summary, in-flight vs limit, utilisation, idle breakdown."""
    from rowloom.engine.output_location import OutputLocation
    from rowloom.engine.terms import FOLDER_TERMS
    from rowloom.interface.folder_report import report_at
    from rowloom.observe.report import ReportError, render_report

    if events is not None:
        _read_events(events, first=True)  # a clear error for a missing or corrupt log; the report streams it
    try:
        location = OutputLocation.of(out_dir, FOLDER_TERMS)  # what run -o takes: a path, file://, s3://, …
        if location.local is not None:
            path = str(render_report(location.local, events=events, output=output, job=job))
        else:
            path = report_at(location, events=events, output=output, job=job)
    except (ReportError, RowloomError, ValueError) as exc:
        messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:  # an object store that cannot be read or written
        messages.error(f"cannot report on {redact(out_dir)}: {exc.strerror or exc}; check the URI and its credentials")
        raise typer.Exit(EXIT_ERROR) from None
    messages.result(f"wrote {path}")


def _read_events(path: Path, *, first: bool = False) -> list[dict]:
    """The events of a log (`first`: only its first, to check the file before a reader that streams it)."""
    from rowloom.observe.event_log import read_events

    try:
        with open(path, "rb") as fh:
            return list(itertools.islice(read_events(fh), 1 if first else None))
    except FileNotFoundError:
        messages.error(f"events file {path} not found; give the file written by `rowloom run --events`")
        raise typer.Exit(EXIT_ERROR) from None
    except ValueError as exc:  # orjson.JSONDecodeError
        messages.error(f"{path} is not an events log (JSON lines): {exc}")
        raise typer.Exit(EXIT_ERROR) from None


app.command("sim", help="Run the OpenAI-compatible provider simulator on 127.0.0.1.")(sim)
app.command("estimate")(estimate)
app.add_typer(bench_app, name="bench")
app.add_typer(export_app)
app.add_typer(cache_app, name="cache")
app.add_typer(batches_app, name="batches")


def main() -> None:
    """Entry point of the `rowloom` script."""
    # `module:function` in a config resolves from the current folder, as under `python -m`; appended, so a file
    # there cannot shadow a library rowloom imports.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        event_loop_factory()  # a mistaken ROWLOOM_EVENT_LOOP is said before any work, not as a traceback in a run
    except ValueError as exc:
        messages.error(str(exc))
        sys.exit(EXIT_ERROR)
    try:
        app()
    except KeyboardInterrupt:
        messages.status("interrupted")
        sys.exit(EXIT_INTERRUPTED)
