"""How an estimate is measured: two dry passes of the real plan and scheduler over a few rows (placeholder replies
at full and at minimal length, so prompts that quote upstream replies get a range), then optionally a real sample
of K rows written nowhere, whose per-row usage, retries, re-asks and latencies are scaled to the full run.

Runs jobs through `run_job` (in memory, nothing written); sends no generation request in a dry pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from rowloom.config.dag import producers, topological_order
from rowloom.config.dataset import DatasetConfig
from rowloom.config.pricing import Pricing
from rowloom.engine.estimate.counting import APPROXIMATION
from rowloom.engine.estimate.dry_client import UNBOUNDED_STANDIN_TOKENS, Bound, dry_client_factory
from rowloom.engine.estimate.figures import (
    ZERO,
    ColumnEstimate,
    EndpointEstimate,
    Estimate,
    Span,
    Usage,
)
from rowloom.engine.job import run_job
from rowloom.errors import RowloomError
from rowloom.models.cache import resolve, with_cache
from rowloom.models.ledger import TokenCounts, TokenLedger
from rowloom.observe.events.base import Event
from rowloom.observe.sinks import EventSink, FanoutSink

#: Rows a dry pass renders when `rows` is not given (at most the records asked for).
DEFAULT_ROWS = 50
#: The dry passes' seed when the config sets none: both passes must render the same rows.
DRY_SEED = 0
#: The reply cache mode of a sample run, by the run's own: never read (a cached reply would measure nothing the
#: provider bills), still written when the run would write (the real run then reuses what the sample paid for).
SAMPLE_CACHE_MODE = {"readwrite": "write", "write": "write", "read": "off", "off": "off"}


class EstimateArgumentError(RowloomError):
    """Numbers an estimate cannot work with (no records, a sample larger than the run); says what to change."""


def check_arguments(records: int, rows: int | None, sample: int) -> None:
    """Raise `EstimateArgumentError` naming the option to fix."""
    if records < 1:
        raise EstimateArgumentError(f"-n/--num-records must be at least 1 (got {records}); give the records to plan")
    if rows is not None and not 1 <= rows <= records:
        raise EstimateArgumentError(
            f"--rows must be between 1 and -n ({records}) (got {rows}); it is how many of the rows to render"
        )
    if sample < 0:
        raise EstimateArgumentError(f"--sample must be 0 or more (got {sample}); 0 runs no real row")
    if sample > records:
        raise EstimateArgumentError(
            f"--sample {sample} is more than -n {records}; sample at most the records you plan to generate"
        )


@dataclass
class _Capacities:
    """The endpoints' configured ceilings (at job start) and limits at job end, from the run's events."""

    configured: dict[str, int] = field(default_factory=dict)
    learned: dict[str, int] = field(default_factory=dict)

    def emit(self, event: Event) -> None:
        if event.kind == "job_started":
            for label, view in getattr(event, "capacities", {}).items():
                if isinstance(view, dict) and view.get("max_limit") is not None:
                    self.configured[str(label)] = int(view["max_limit"])
        elif event.kind == "capacity_snapshot" and getattr(event, "reason", "") == "job_completed":
            for label, view in event.endpoints.items():
                if view.get("limit") is not None:
                    self.learned[str(label)] = int(view["limit"])

    def close(self) -> None:
        return None


class _SampleRecorder:
    """Every request attempt of a sample run, by row and column (whole-column tasks apart), and latencies by
    endpoint. Rows are `(row group, row)`; attempts of rows dropped later count like any other."""

    def __init__(self, prices: Mapping[str, Pricing | None]):
        self.prices = prices
        self.rows: dict[tuple[int, int], dict[str, TokenCounts]] = defaultdict(lambda: defaultdict(TokenCounts))
        self.shared: dict[str, TokenCounts] = defaultdict(TokenCounts)
        self.latencies: dict[str, list[float]] = defaultdict(list)  # by endpoint
        self.column_latency: Counter[str] = Counter()  # seconds of every attempt, by column
        self.requests: Counter[str] = Counter()

    def emit(self, event: Event) -> None:
        if event.kind != "request_completed":
            return
        counts = TokenCounts.of_event(event, self.prices.get(event.alias or ""))
        self.latencies[event.key].append(float(event.latency_s))
        self.column_latency[event.group] += float(event.latency_s)
        self.requests[event.key] += 1
        row = _row_of(event.task)
        if event.row_group is None or row is None:
            self.shared[event.group].add(counts)
        else:
            self.rows[(event.row_group, row)][event.group].add(counts)

    def close(self) -> None:
        return None


def _row_of(task: str | None) -> int | None:
    """The local row of a cell task's id (`row_group:column:row`); None for a whole-column task."""
    if not task:
        return None
    head, _, tail = task.rpartition(":")
    return int(tail) if tail.isdigit() and ":" in head else None


def _dry_config(config: DatasetConfig) -> DatasetConfig:
    """The config a dry pass runs: no budget (nothing is spent) and a fixed seed when it has none."""
    seed = DRY_SEED if config.run.seed is None else config.run.seed
    return config.model_copy(update={"run": config.run.model_copy(update={"budget": None, "seed": seed})})


async def estimate(
    config: DatasetConfig,
    records: int,
    *,
    rows: int | None = None,
    sample: int = 0,
    sink: EventSink | None = None,
) -> Estimate:
    """Estimate a run of `records` rows: dry passes over `rows` rows (default min(records, 50)), then, with
    `sample` > 0, that many real rows in memory. `sink` receives the sample run's events."""
    check_arguments(records, rows, sample)
    rows = rows or min(records, DEFAULT_ROWS)
    # What a run pays: a batch model's requests at its batch prices (the passes send them online, to a dry client).
    prices = {m.alias: m.batch_prices if m.execution == "batch" else m.prices for m in config.models}
    llm_columns = [c for c in config.columns if c.model_alias]
    used = {c.model_alias for c in llm_columns}
    priced = all(prices.get(alias) is not None for alias in used)
    currency = next((prices[a].currency for a in sorted(used) if prices.get(a) is not None), None) if priced else None

    caches: dict[str, dict[bytes, int]] = {}
    methods: dict[str, str] = {}
    dry = _dry_config(config)
    ledgers: dict[Bound, TokenLedger] = {}
    capacities = _Capacities()
    for bound in (Bound.HIGH, Bound.LOW):
        ledgers[bound] = TokenLedger(prices)
        sinks: list[EventSink] = [ledgers[bound], capacities]
        await run_job(
            dry, rows, output=None, sink=FanoutSink(sinks), client_factory=dry_client_factory(bound, caches, methods)
        )
    factor = records / rows
    high, low = ledgers[Bound.HIGH], ledgers[Bound.LOW]

    models = {m.alias: m for m in config.models}
    counted_by = {alias: methods.get(models[alias].providers[0], APPROXIMATION) for alias in sorted(used)}
    notes: list[str] = []
    columns: list[ColumnEstimate] = []
    for column in llm_columns:
        name, alias = column.name, column.model_alias
        top, bottom = high.by_column.get(name, TokenCounts()), low.by_column.get(name, TokenCounts())
        dry_usage = Usage(
            requests=Span.exact(top.requests * factor),
            prompt_tokens=Span(bottom.prompt_tokens * factor, top.prompt_tokens * factor),
            completion_tokens=Span(bottom.completion_tokens * factor, top.completion_tokens * factor),
            cost=Span(bottom.cost * factor, top.cost * factor) if priced else None,
        )
        bounded = (
            models[alias].inference.max_tokens is not None or "max_completion_tokens" in models[alias].inference.extra
        )
        basis = "max_tokens (worst case)" if bounded else "unbounded: no max_tokens"
        if not bounded:
            notes.append(
                f"model {alias} sets no max_tokens, so {name}'s completions have no worst case; the dry figures "
                f"assume {UNBOUNDED_STANDIN_TOKENS} tokens per reply (set max_tokens, or measure with --sample)"
            )
        columns.append(ColumnEstimate(name, alias, counted_by[alias], dry_usage, basis))
    total_dry = _sum([c.dry for c in columns], priced)

    endpoint_requests = {label: Span.exact(c.requests * factor) for label, c in high.by_endpoint.items()}
    endpoints = [
        EndpointEstimate(label, requests, capacities.configured.get(label))
        for label, requests in sorted(endpoint_requests.items())
    ]
    result = Estimate(
        records=records,
        rows_rendered=rows,
        sample_rows=0,
        columns=columns,
        total_dry=total_dry,
        total_measured=None,
        currency=currency,
        endpoints=endpoints,
        counted_by=counted_by,
        notes=notes,
    )
    batched = sorted(m.alias for m in config.models if m.execution == "batch" and m.alias in used)
    if batched:
        notes.append(
            f"model{'s' if len(batched) > 1 else ''} {', '.join(batched)} send{'' if len(batched) > 1 else 's'} "
            "requests in batches: costs are at batch prices, and wall time leaves out the batches' completion "
            "window (a sample asks online, for the tokens)"
        )
    if sample == 0:
        notes.append("wall time needs a measured latency: run with --sample K to estimate it")
        return result
    return await _with_sample(config, result, sample, prices, priced, sink)


async def _with_sample(
    config: DatasetConfig,
    dry: Estimate,
    sample: int,
    prices: Mapping[str, Pricing | None],
    priced: bool,
    sink: EventSink | None,
) -> Estimate:
    """`dry` with the measured figures of `sample` real rows scaled to its records, and the wall time."""
    recorder, capacities = _SampleRecorder(prices), _Capacities()
    sinks: list[EventSink] = [recorder, capacities, *([sink] if sink is not None else [])]
    mode = SAMPLE_CACHE_MODE[str(resolve(config.run.cache).mode)]
    # Online even for batch models: a sample measures tokens in seconds, not in a completion window.
    online = config.model_copy(
        update={"models": [m.model_copy(update={"execution": "online", "batch": None}) for m in config.models]}
    )
    outcome = await run_job(with_cache(online, mode=mode), sample, output=None, sink=FanoutSink(sinks))
    records = dry.records
    row_ids = list(recorder.rows)
    missing = sample - len(row_ids)  # rows that never sent a request (dropped before their first LLM cell)

    def per_row(column: str | None) -> dict[str, list[float]]:
        values: dict[str, list[float]] = {"requests": [], "prompt": [], "completion": [], "cost": []}
        for key in row_ids:
            counts = TokenCounts()
            for name, c in recorder.rows[key].items():
                if column is None or name == column:
                    counts.add(c)
            values["requests"].append(counts.requests)
            values["prompt"].append(counts.prompt_tokens)
            values["completion"].append(counts.completion_tokens)
            values["cost"].append(counts.cost)
        for series in values.values():
            series.extend([0.0] * missing)
        return values

    def measured(column: str | None) -> Usage:
        values = per_row(column)
        shared = TokenCounts()
        for name, c in recorder.shared.items():
            if column is None or name == column:
                shared.add(c)
        scale = records / sample

        def span(series: str, extra: float) -> Span:
            return Span.of_rows(values[series], records) + Span.exact(extra * scale)

        return Usage(
            requests=span("requests", shared.requests),
            prompt_tokens=span("prompt", shared.prompt_tokens),
            completion_tokens=span("completion", shared.completion_tokens),
            cost=span("cost", shared.cost) if priced else None,
        )

    columns = [
        ColumnEstimate(c.column, c.model, c.counted_by, c.dry, c.completion_basis, measured(c.column))
        for c in dry.columns
    ]
    notes = list(dry.notes)
    unknown = sum(c.unknown_usage for r in recorder.rows.values() for c in r.values())
    if unknown:
        notes.append(
            f"{unknown} replies of the sample reported no usage: their tokens are missing from the measured figures"
        )
    endpoints, wall, bottleneck = _wall_time(recorder, capacities, records, sample, _chain_s(config, recorder, sample))
    return Estimate(
        records=records,
        rows_rendered=dry.rows_rendered,
        sample_rows=sample,
        columns=columns,
        total_dry=dry.total_dry,
        total_measured=measured(None),
        currency=dry.currency,
        endpoints=endpoints,
        counted_by=dry.counted_by,
        wall_s=wall,
        bottleneck=bottleneck,
        sample_rows_dropped=int(outcome.summary.get("rows_dropped", 0)),
        notes=notes,
    )


def _chain_s(config: DatasetConfig, recorder: _SampleRecorder, sample: int) -> float:
    """Seconds one row spends on its longest chain of dependent LLM columns (each column's attempts, re-asks and
    retries included, per row of the sample): the part of the run no concurrency can overlap (its last row)."""
    made_by = producers(config.columns)
    longest: dict[str, float] = {}
    for name in topological_order(config.columns):
        column = next(c for c in config.columns if c.name == name)
        upstream = [longest.get(made_by[r], 0.0) for r in column.dependencies() if made_by.get(r, name) != name]
        longest[name] = recorder.column_latency.get(name, 0.0) / sample + max(upstream, default=0.0)
    return max(longest.values(), default=0.0)


def _wall_time(
    recorder: _SampleRecorder, capacities: _Capacities, records: int, sample: int, chain_s: float
) -> tuple[list[EndpointEstimate], Span | None, str | None]:
    """Per endpoint: its requests scaled to `records` × its mean latency ÷ its concurrency, plus the row chain
    `chain_s` (the run's last row); the expected figure and the short end at the configured ceiling, the long end
    at the limit learned by the sample's end. The run takes as long as its slowest endpoint."""
    endpoints = []
    for label in sorted(recorder.requests):
        latencies = recorder.latencies[label]
        mean = sum(latencies) / len(latencies)
        requests = recorder.requests[label] * records / sample
        configured = capacities.configured.get(label)
        learned = capacities.learned.get(label, configured)
        wall = None
        if configured:
            slowest = min(learned or configured, configured)
            fastest = requests * mean / configured + chain_s
            wall = Span(fastest, requests * mean / slowest + chain_s, fastest)
        endpoints.append(EndpointEstimate(label, Span.exact(requests), configured, learned, mean, wall))
    timed = [e for e in endpoints if e.wall_s is not None]
    if not timed:
        return endpoints, None, None
    slowest_endpoint = max(timed, key=lambda e: e.wall_s.point if e.wall_s else 0.0)
    return endpoints, slowest_endpoint.wall_s, slowest_endpoint.endpoint


def _sum(usages: list[Usage], priced: bool) -> Usage:
    requests = prompt = completion = ZERO
    cost = ZERO if priced else None
    for usage in usages:
        requests, prompt, completion = (
            requests + usage.requests,
            prompt + usage.prompt_tokens,
            completion + usage.completion_tokens,
        )
        if cost is not None and usage.cost is not None:
            cost = cost + usage.cost
    return Usage(requests, prompt, completion, cost)
