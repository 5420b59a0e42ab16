"""One worker's engine: the normal scheduler over assigned row groups, request admission fed by capacity grants.

Owns a worker's request runtime (its limits are `GrantLimit`s renewed from each endpoint's authority), the
part files it writes and the events it forwards; plain asyncio, so the Ray actor only wraps it. Must not write
the manifest (the driver alone does) nor decide which row groups it runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.concurrency.tasks import cancel_and_wait
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.completion import RowGroupState
from rowloom.engine.distributed.grants import GrantLimit, GrantRenewer, Renew
from rowloom.engine.generators import build_generators
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.plan import build_plan
from rowloom.engine.runtime import RequestRuntime, effective_model
from rowloom.engine.scheduler import Scheduler
from rowloom.engine.seed_reader import SeedReader
from rowloom.engine.storage import OutputStore, WrittenRowGroup
from rowloom.models.admission.keys import ResourceKey
from rowloom.models.admission.registry import LimitBounds
from rowloom.observe.context import correlate
from rowloom.observe.events.base import Event
from rowloom.observe.events.request import LimitChanged
from rowloom.observe.sinks import guarded


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A request resource key of the run and the ceiling its authority's limit is bounded by."""

    label: str
    ceiling: int


def endpoints_of(config: DatasetConfig) -> dict[str, Endpoint]:
    """Every endpoint key the run's columns use (aliases of one provider+model share one), by label."""
    settings = config.run.request_admission
    used = {c.model_alias for c in config.columns if c.model_alias}
    out: dict[str, Endpoint] = {}
    for model in config.models:
        if model.alias not in used:
            continue
        for member in model.members():  # a pool's endpoints each have their own authority
            effective = effective_model(member.model, config.provider(member.model.provider))
            label = ResourceKey(effective.provider, effective.model, "chat").label
            ceiling = effective.max_parallel_requests or settings.default_max_parallel_requests
            known = out.get(label)
            out[label] = Endpoint(label, max(ceiling, known.ceiling if known else 0))
    return out


class PartWriter(OutputStore):
    """The output store as a worker uses it: writes part files atomically, never the manifest.

    Each writer's parts carry its name (`part-NNNNN-JOB-wK.parquet`): a worker the driver dropped as unreachable
    may still be writing, and must never replace the part of the worker its row groups went to."""

    def __init__(self, writer: str, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.writer = writer

    def part_name(self, index: int) -> str:
        return super().part_name(index).removesuffix(".parquet") + f"-{self.writer}.parquet"

    def _write_manifest(self, complete: bool) -> None:
        return None  # the driver records every part in the one manifest


class GrantedRuntime(RequestRuntime):
    """A `RequestRuntime` whose per-key limits are capacity grants (one `GrantLimit` per endpoint label)."""

    def __init__(self, config: DatasetConfig, *, sink: Any, clock: Clock):
        self.grants: dict[str, GrantLimit] = {}
        self.keys: dict[str, ResourceKey] = {}

        def grant_limit(key: ResourceKey, bounds: LimitBounds) -> GrantLimit:  # the authority moves the limit
            limit = self.grants[key.label] = GrantLimit(ceiling=bounds.ceiling, clock=clock)
            self.keys[key.label] = key
            return limit

        super().__init__(config, sink=sink, clock=clock, limit_factory=grant_limit)

    def demand(self, label: str) -> int:
        """Requests of this worker that want the endpoint now: in flight plus queued (none queued while the
        local controller pauses the key: a grant it cannot use goes to the other workers)."""
        key = self.keys[label]
        waiting = 0 if self.admission.cooling(key) else self.admission.waiting(key)
        return self.admission.in_flight(key) + waiting

    def in_flight(self, label: str) -> int:
        return self.admission.in_flight(self.keys[label])

    def cooling_s(self, label: str) -> float:
        """How long this worker's controller still pauses the key (a Retry-After or spent-budget pause)."""
        return self.admission.cooling_for(self.keys[label])

    def grant_changed(self, label: str, old: int, new: int) -> None:
        """This worker's usable share moved (renewed, cut, lapsed): record it, and let the queued requests see
        it at once rather than at the next release (which never comes to a worker with nothing in flight)."""
        self.sink.emit(LimitChanged(key=label, old=old, new=new, reason=self.grants[label].reason))
        self.admission.refresh(self.keys[label])  # a smaller share admits nobody: one rule for every change


class ForwardingSink:
    """Buffers events for the driver (thread-safe: the checkpoint thread flushes while the loop emits)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def take(self) -> list[Event]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a worker hands the driver: a written part (or None for events alone) and the events so far."""

    worker: str
    entry: WrittenRowGroup | None
    events: list[Event] = field(default_factory=list)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)


Deliver = Callable[[Delivery], None]
"""`deliver(delivery)`: hand it to the driver, blocking until it is accepted; called from a thread."""

EVENTS_EVERY_S = 0.5  # between parts, events still reach the driver this often (its live view and log)


class WorkerEngine:
    """Runs assigned row groups with the normal scheduler; written parts are delivered as they land."""

    def __init__(
        self,
        worker: str,
        job: str,
        config: DatasetConfig,
        num_records: int,
        output: OutputLocation,
        seed: int,
        renew: Renew,
        deliver: Deliver,
        *,
        renew_interval_s: float = 0.1,
        clock: Clock = SYSTEM_CLOCK,
        extended_from: tuple[int, ...] = (),
    ):
        self.worker, self.job = worker, job
        self.source = f"{job}:{worker}"  # the job id of this worker's events
        self.config, self.seed, self.clock = config, seed, clock
        self.plan = build_plan(config, num_records, extended_from)  # the driver's row groups, cut alike
        self.store = PartWriter(f"{job}-{worker}", output, config, self.plan, num_records, seed)
        self.sink = ForwardingSink()
        # What the scheduler, request admission and the executor emit into: a sink failing under them would
        # break the run (a lease issued but never handed over), so it is guarded like a local run's sinks.
        self.events = guarded(self.sink, "forwarding")
        self.deliver = deliver
        self.runtime = GrantedRuntime(config, sink=self.events, clock=clock)
        self.renewer = GrantRenewer(
            worker,
            self.runtime.grants,
            renew,
            self.runtime.demand,
            self.runtime.in_flight,
            self.runtime.grant_changed,
            cooling_s=self.runtime.cooling_s,
            interval_s=renew_interval_s,
            clock=clock,
        )
        self.seed_reader: SeedReader | None = None
        self.generators: dict[str, Any] = {}
        self._entered = False
        self._forwarding: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open clients, build the generators, take the first grants and start renewing them."""
        if self.config.seed is not None:
            self.seed_reader = SeedReader(self.config.seed, self.seed)
        await self.runtime.__aenter__()
        self._entered = True
        self.generators = build_generators(self.config, self.plan, self.runtime.executor, self.seed_reader)
        with correlate(job=self.source):  # the background tasks' events carry this worker's id too
            self.renewer.start()
            self._forwarding = asyncio.get_running_loop().create_task(self._forward_events())

    async def _forward_events(self) -> None:
        """Events this often, and nothing but a sign of life when there are none: the driver drops a worker
        it has not heard from for a while (`ray_executor.LIVENESS_S`)."""
        while True:
            await asyncio.to_thread(self.deliver, Delivery(self.worker, None, self.sink.take()))
            await self.clock.sleep(EVENTS_EVERY_S)

    async def run(self, indices: list[int]) -> list[int]:
        """Generate and write the given row groups; returns their indices once all are delivered."""
        wanted = set(indices)
        skip = frozenset(g.index for g in self.plan.row_groups if g.index not in wanted)
        with correlate(job=self.source):
            scheduler = Scheduler(
                config=self.config,
                plan=self.plan,
                generators=self.generators,
                checkpointer=_Delivering(self.worker, self.store, self.sink, self.deliver),
                endpoints=self.runtime,
                seed=self.seed,
                skip_row_groups=skip,
                sink=self.events,
                clock=self.clock,
            )
            await scheduler.run()
        # a blocking hand-over: off the loop
        await asyncio.to_thread(self.deliver, Delivery(self.worker, None, self.sink.take()))
        return sorted(wanted)

    async def close(self) -> None:
        """Give every grant back and close the clients; each step runs even if the one before it failed or the
        caller was cancelled meanwhile (which then propagates)."""
        try:
            if self._forwarding is not None:
                await cancel_and_wait(self._forwarding)
        finally:
            try:
                await self.renewer.stop()
            finally:
                if self._entered:
                    await self.runtime.__aexit__(None, None, None)
                if self.seed_reader is not None:
                    self.seed_reader.close()


class _Delivering:
    """Checkpointer: write the part atomically, then deliver its entry (and the events so far) to the driver."""

    def __init__(self, worker: str, store: PartWriter, sink: ForwardingSink, deliver: Deliver):
        self.worker, self.store, self.sink, self.deliver = worker, store, sink, deliver

    def write(self, state: RowGroupState) -> str:
        table = self.store.table(state.values, state.live_rows)
        entry = self.store.write_row_group(state.index, table, len(state.dropped))
        reasons = dict(Counter(state.dropped.values()))
        try:
            self.deliver(Delivery(self.worker, entry, self.sink.take(), reasons))
        except BaseException:
            # Undelivered, never listed: most often a worker the driver dropped that woke after the run ended
            # (its ledger is gone), whose part would otherwise stay in `data/` beside the listed ones.
            self.store.location.delete(entry.file)
            raise
        return entry.file
