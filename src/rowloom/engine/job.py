"""One generation job end to end: plan, open the output (or resume it), wire the request path, run, summarise.

The interface layer calls `run_job`; tests and benchmarks can too. Every path closes what it opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.config.checks import config_warnings
from rowloom.config.dataset import DatasetConfig
from rowloom.engine import run_inputs
from rowloom.engine.completion import RowGroupState
from rowloom.engine.generators import build_generators
from rowloom.engine.generators.skip import SkipAware
from rowloom.engine.generators.validation import ValidationGenerator
from rowloom.engine.heap import frozen_heap
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.output_lock import WriterLock
from rowloom.engine.plan import build_plan
from rowloom.engine.progress import RunProgress
from rowloom.engine.resume import Action, ResumeDecision, decide, folder_name
from rowloom.engine.runtime import ClientFactory, RequestRuntime
from rowloom.engine.scheduler import Scheduler
from rowloom.engine.seed_reader import SeedReader
from rowloom.engine.storage import MANIFEST, SUMMARY, OutputStore, ResumeMode, encode_manifest
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import (
    BudgetReached,
    ConfigError,
    ConfigProblem,
    OutputError,
    RowloomWarning,
    RunAborted,
    RunInterrupted,
)
from rowloom.observe.context import correlate
from rowloom.observe.events import scheduler as ev
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.sinks import EventSink, FanoutSink
from rowloom.observe.stats import RequestStats

log = logging.getLogger(__name__)


class ParquetCheckpointer:
    """Writes each complete row group as one Parquet file via the output store."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.skipped: Counter[str] = Counter()  # skipped cells of the rows written, by column

    def write(self, state: RowGroupState) -> str:
        self.skipped.update(state.skipped_counts())
        self.store.ledger.settle(state.index, state.dropped)  # before the manifest that lists the group
        table = self.store.table(state.values, state.live_rows)
        return self.store.write_row_group(state.index, table, len(state.dropped)).file


class MemoryCheckpointer:
    """Keeps complete row groups as Arrow tables (previews write nothing)."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.tables: dict[int, pa.Table] = {}
        self.skipped: Counter[str] = Counter()

    def write(self, state: RowGroupState) -> str:
        self.skipped.update(state.skipped_counts())
        self.tables[state.index] = self.store.table(state.values, state.live_rows)
        return f"memory:{state.index}"


@dataclass
class JobResult:
    """What a finished job produced: where, how much, and the summary written beside it."""

    output: Path | str | None  # the local folder, or the URI (without credentials); None for a preview
    summary: dict[str, Any]
    files: list[str] = field(default_factory=list)  # part files in row-group order
    tables: list[pa.Table] = field(default_factory=list)
    filesystem: Any = None  # the `pyarrow.fs.FileSystem` holding `files` when the output is a URI
    generated: bool = True  # False: the folder already held this complete run and nothing was touched
    message: str = ""  # when nothing was generated: why, in words for the caller (`ResumeDecision.message`)

    @classmethod
    def written(cls, store: OutputStore, summary: dict[str, Any]) -> JobResult:
        """The result of a run that wrote to `store`."""
        where = store.location
        output = where.local if where.filesystem is None else str(where)
        return cls(output, summary, files=store.files(), filesystem=where.filesystem)

    @classmethod
    def already_complete(cls, location: OutputLocation, decision: ResumeDecision) -> JobResult:
        """The result of a run whose folder already held it, complete: its own summary and files, read only."""
        manifest = decision.manifest or {}
        try:
            data = location.read_bytes(SUMMARY)
            summary = json.loads(data) if data else None
        except (OSError, ValueError):
            summary = None
        if not isinstance(summary, dict):  # removed or damaged: what the manifest says
            summary = {
                "status": "completed",
                "records_requested": manifest.get("num_records"),
                "records_written": manifest.get("records_written"),
                "rows_dropped": manifest.get("rows_dropped"),
                "requests": {},
                "wall_s": 0.0,
                "seed": manifest.get("seed"),
            }
        entries = sorted(manifest.get("row_groups", []), key=lambda e: e["index"])
        output = location.local if location.filesystem is None else str(location)
        return cls(
            output,
            summary,
            files=[location.path(e["file"]) for e in entries],
            filesystem=location.filesystem,
            generated=False,
            message=decision.message,
        )

    def to_arrow(self) -> pa.Table:
        """Every row written (all row groups, in order) as one Arrow table."""
        if self.tables:
            return pa.concat_tables(self.tables)
        import pyarrow.parquet as pq

        if not self.files:
            return pa.table({})
        return pa.concat_tables([pq.read_table(f, filesystem=self.filesystem) for f in self.files])

    def to_pandas(self):
        """Every row written as a pandas DataFrame."""
        return self.to_arrow().to_pandas()


def choose_seed(config: DatasetConfig, decision: ResumeDecision) -> int:
    """The run's seed: the config's, else the one of the run being resumed or extended, else a fresh random one."""
    if config.run.seed is not None:
        return config.run.seed
    if decision.seed is not None:
        return decision.seed
    return random.SystemRandom().randrange(2**63)


async def run_job(
    config: DatasetConfig,
    num_records: int,
    *,
    output: str | Path | OutputLocation | None,
    resume: ResumeMode = "auto",
    sink: EventSink | None = None,
    progress: RunProgress | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_start: Callable[[Scheduler, RequestStats], None] | None = None,
    terms: Terms = CLI_TERMS,
    client_factory: ClientFactory | None = None,
) -> JobResult:
    """Generate `num_records` rows; with `output=None` keep them in memory (preview) instead of writing.

    A folder that already holds this complete run is left as it is (`JobResult.generated` is False); a run of
    the same config with fewer records is extended. Messages name the caller's arguments as `terms` spell them.
    `client_factory` replaces every provider's HTTP client (`RequestRuntime`).
    """
    location = OutputLocation.of(output, terms) if output is not None else None
    check_export_target(config, location, terms)
    args = (config, num_records, location, resume, sink, progress, clock, on_start, terms, client_factory)
    with frozen_heap():
        if location is None:
            return await _run(*args)
        # Taken before the folder is read (no other run changes it until this one ends); off the loop: an object
        # store's lock waits for a racing writer.
        with await asyncio.to_thread(WriterLock.take, location, terms):
            return await _run(*args)


async def _run(
    config: DatasetConfig,
    num_records: int,
    location: OutputLocation | None,
    resume: ResumeMode,
    sink: EventSink | None,
    progress: RunProgress | None,
    clock: Clock,
    on_start: Callable[[Scheduler, RequestStats], None] | None,
    terms: Terms,
    client_factory: ClientFactory | None = None,
) -> JobResult:
    started = time.monotonic()
    decision = ResumeDecision(Action.START)  # a preview writes nothing
    if location is not None:
        decision = decide(location, config, num_records, resume, terms)
        if decision.recovered_from:
            recover_manifest(location, decision)
        if decision.action is Action.DONE:
            return JobResult.already_complete(location, decision)
    plan = build_plan(config, num_records, decision.extended_from)
    seed = choose_seed(config, decision)
    for warning in config_warnings(config):
        warnings.warn(warning, RowloomWarning, stacklevel=2)
    seed_reader = None
    if config.seed is not None:  # indexing a CSV/JSONL seed reads it once: off the event loop
        seed_reader = await asyncio.to_thread(SeedReader, config.seed, seed)
    inputs: dict[str, Any] = {}
    try:
        if location is not None:  # the files and code the rows come from, as the manifest records them
            rows = seed_reader.num_rows if seed_reader is not None else None
            inputs = await asyncio.to_thread(run_inputs.settle, config, decision.manifest, location, terms, rows)
        if seed_reader is not None:
            seed_reader.check_records(num_records)
    except BaseException:
        if seed_reader is not None:
            seed_reader.close()
        raise
    store = OutputStore(location or OutputLocation("."), config, plan, num_records, seed)
    store.inputs = inputs
    if location is not None:
        try:
            store.open(decision.manifest, decision.extended_from, terms, decision.accounts)
        except BaseException:
            if seed_reader is not None:
                seed_reader.close()
            raise
        checkpointer: ParquetCheckpointer | MemoryCheckpointer = ParquetCheckpointer(store)
    else:
        checkpointer = MemoryCheckpointer(store)
    stats = RequestStats()
    events = FanoutSink([stats, store.ledger, *([sink] if sink is not None else [])])
    progress = progress or RunProgress()
    progress.spend = store.spend
    resumed = sum(w.rows for w in store.written.values())
    progress.begin(records_total=num_records, row_groups_total=len(plan.row_groups), records_resumed=resumed)
    job_id = uuid.uuid4().hex[:12]
    status, message = "completed", ""
    runtime = RequestRuntime(
        config,
        sink=events,
        clock=clock,
        budget=store.spend,
        client_factory=client_factory,
        batch_folder=location.local if location is not None else None,
        written=frozenset(store.written),
    )
    generators: dict[str, Any] = {}
    features: dict[str, Any] = {}
    with correlate(job=job_id):
        try:
            async with runtime:
                generators = build_generators(config, plan, runtime.executor, seed_reader)
                scheduler = Scheduler(
                    config=config,
                    plan=plan,
                    generators=generators,
                    checkpointer=checkpointer,
                    endpoints=runtime,
                    seed=seed,
                    skip_row_groups=frozenset(store.written),
                    progress=progress,
                    sink=events,
                    clock=clock,
                    budget=store.spend,
                )
                if on_start is not None:
                    on_start(scheduler, stats)
                loop = type(asyncio.get_running_loop())
                log.debug(
                    "job %s: %d records; row groups: %d (%d written before); columns: %s; event loop: %s.%s",
                    job_id,
                    num_records,
                    len(plan.row_groups),
                    len(store.written),
                    ", ".join(c.name for c in plan.columns),
                    loop.__module__,
                    loop.__qualname__,
                )
                events.emit(
                    ev.JobStarted(
                        num_records=num_records,
                        row_groups=len(plan.row_groups),
                        resumed_row_groups=len(store.written),
                        columns=[c.name for c in plan.columns],
                        capacities=runtime.snapshot(),
                    )
                )
                events.emit(scheduler.health_snapshot())  # the starting frontier target, pools and capacities
                events.emit(CapacitySnapshot.of(runtime.snapshot(), "job_started"))
                await scheduler.run()
                if config.export is not None and location is not None:
                    features["export"] = await asyncio.to_thread(export_output, config, location)
        except (RunInterrupted, asyncio.CancelledError, KeyboardInterrupt):
            status, message = "interrupted", "interrupted by the user"
            raise
        except BudgetReached as exc:
            written = sum(w.rows for w in store.written.values()) or progress.records_written  # with earlier runs
            status, message = "budget_reached", str(store.spend.reached(exc, written, num_records))
            raise
        except RunAborted as exc:
            status, message = "aborted", str(exc)
            raise
        except BaseException as exc:
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            wall = time.monotonic() - started
            summary = build_summary(config, num_records, store, progress, stats, wall, status, message, seed)
            summary.update(_feature_summary(checkpointer.skipped, generators, seed_reader), **features)
            if runtime.open_batches:  # left running for a resume to collect (`rowloom batches cancel` stops them)
                summary["batches_left_running"] = runtime.open_batches
            if seed_reader is not None:
                seed_reader.close()
            events.emit(CapacitySnapshot.of(runtime.snapshot(), "job_completed"))
            end_job(events, summary, store if location is not None else None, wall_s=wall)
            log.debug("job %s %s after %.1fs: %d records written", job_id, status, wall, progress.records_written)
    if isinstance(checkpointer, MemoryCheckpointer):
        tables = [checkpointer.tables[i] for i in sorted(checkpointer.tables)]
        return JobResult(None, summary, tables=tables)
    return JobResult.written(store, summary)


def recover_manifest(location: OutputLocation, decision: ResumeDecision) -> None:
    """Say that the folder's manifest.json was missing and its run continues from the temp manifest `decide`
    read; a complete run gets its manifest.json back at once (a run that goes on writes its own)."""
    warnings.warn(
        f"{folder_name(location)}{MANIFEST} was missing (a move interrupted on a filesystem that has no rename, "
        f"such as HDFS); continuing from {decision.recovered_from}, the last manifest written",
        RowloomWarning,
        stacklevel=2,
    )
    if decision.action is Action.DONE:
        try:
            location.write_bytes(MANIFEST, encode_manifest(decision.manifest))
            location.remove_leftovers("")
        except OSError as exc:
            raise OutputError(f"cannot write the manifest in {location}: {exc.strerror or exc}") from None


def restore_manifest(output: str | Path | OutputLocation, decision: ResumeDecision, terms: Terms = CLI_TERMS) -> None:
    """`recover_manifest` for a caller that found the run complete before starting it (the CLI), under the
    folder's writer lock."""
    location = OutputLocation.of(output, terms)
    with WriterLock.take(location, terms):
        if location.read_bytes(MANIFEST) is None:
            recover_manifest(location, decision)


def end_job(events: EventSink, summary: dict[str, Any], store: OutputStore | None, *, wall_s: float) -> None:
    """The last steps of every run: `JobCompleted` from its summary, close the sinks, then write the summary and
    mark the manifest complete (or not) when the run had an output."""
    events.emit(
        ev.JobCompleted(
            status=summary["status"],
            records_written=summary["records_written"],
            rows_dropped=summary["rows_dropped"],
            wall_s=wall_s,
            message=summary["message"],
        )
    )
    events.close()
    if store is not None:
        store.finish(summary, complete=summary["status"] == "completed")


def check_export_target(config: DatasetConfig, location: OutputLocation | None, terms: Terms = CLI_TERMS) -> None:
    """`export:` writes beside the output, and a batch model's journal in it: refuse a URI output for either before
    anything is generated."""
    if location is not None and location.local is None:
        used = {c.model_alias for c in config.columns}
        for i, model in enumerate(config.models):
            if model.execution == "batch" and model.alias in used:
                raise ConfigError(
                    ConfigProblem(
                        f"models[{i}] ({model.alias}).execution",
                        f"is batch, whose journal (what a resume polls instead of paying twice) needs a local "
                        f"output folder (got {location})",
                        f"give a local {terms.name('output')} and copy it to the object store afterwards",
                    )
                )
    if config.export is not None and location is not None and location.local is None:
        raise ConfigError(
            ConfigProblem(
                "export",
                f"writes a file beside the output folder, which must then be local (got {location})",
                f"remove export: and run `rowloom export` on a local copy, or give a local {terms.name('output')}",
            )
        )


def export_output(config: DatasetConfig, location: OutputLocation) -> dict[str, Any]:
    """The `export:` of a completed run: the file written and its line count."""
    from rowloom.engine.export import export_jsonl

    export = config.export
    assert export is not None and location.local is not None
    out_path = location.local
    target = out_path / export.path
    result = export_jsonl(out_path, target, format=export.format, messages_column=export.messages_column)
    return {
        "path": str(target),
        "format": export.format,
        "records": result.records,
        "rows_left_out": result.rows_left_out,
    }


def _feature_summary(skipped: Counter[str], generators: dict[str, Any], seed_reader: SeedReader | None) -> dict:
    """Summary parts of skips, validators and the seed (left out when the run has none)."""
    out: dict[str, Any] = {"cells_skipped": dict(skipped)}
    validation = {}
    for name, generator in generators.items():
        inner = generator.inner if isinstance(generator, SkipAware) else generator
        if isinstance(inner, ValidationGenerator):
            validation[name] = {k: inner.outcomes.get(k, 0) for k in ("valid", "invalid", "error", "timeout")}
    if validation:
        out["validation"] = validation
    if seed_reader is not None:
        stats = seed_reader.stats
        out["seed_dataset"] = {
            "rows": seed_reader.num_rows,
            "blocks_read": stats.blocks_read,
            "rows_decoded": stats.rows_decoded,
            "max_block_rows": stats.max_block_rows,
        }
    return out


def build_summary(
    config: DatasetConfig,
    num_records: int,
    store: OutputStore,
    progress: RunProgress,
    stats: RequestStats,
    wall_s: float,
    status: str,
    message: str,
    seed: int,
) -> dict[str, Any]:
    """The content of `summary.json`: records, drops by reason, requests by outcome, reply-cache hits and what they
    saved, tokens, outages per endpoint, the token ledger (this run's, and with the earlier runs into the folder),
    wall time."""
    return {
        "status": status,
        "message": message,
        "records_requested": num_records,
        "records_written": sum(w.rows for w in store.written.values()) or progress.records_written,
        "records_written_this_run": progress.records_written,
        "records_resumed": progress.records_resumed,
        "rows_dropped": progress.rows_dropped,
        "rows_dropped_by_reason": dict(progress.dropped_by_reason),
        "row_groups_written": progress.row_groups_written,
        "requests": stats.summary(),
        "cache": stats.cache(store.ledger.prices),
        **({"batches": stats.batch_summary()} if stats.batches else {}),
        "endpoints": stats.endpoints(),
        "ledger": store.ledger.to_dict(),
        "ledger_all_runs": store.ledger_all_runs(),
        "spend": store.spend_summary(),
        "wall_s": round(wall_s, 3),
        "seed": seed,
        "config_fingerprint": config.fingerprint(),
        **({"extended_from": list(store.extended_from)} if store.extended_from else {}),
    }
