"""The driver of a Ray run: plan, own the output and its manifest, hand row groups to worker actors, merge events.

Owns worker and authority lifetimes, row-group assignment and re-assignment after a worker dies, and the one
manifest; must not generate rows itself (workers run the normal engine) nor decide grants (authorities do).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rowloom.config.dataset import DatasetConfig
from rowloom.engine import run_inputs
from rowloom.engine.distributed import import_ray
from rowloom.engine.distributed.authority import CapacityAuthority
from rowloom.engine.distributed.deliveries import DeliveryBook, DriverStore
from rowloom.engine.distributed.grants import Grant, Report
from rowloom.engine.distributed.worker import Delivery, WorkerEngine, endpoints_of
from rowloom.engine.job import (
    JobResult,
    build_summary,
    check_export_target,
    choose_seed,
    end_job,
    export_output,
    recover_manifest,
)
from rowloom.engine.output_location import OutputLocation
from rowloom.engine.output_lock import holding_writer_lock
from rowloom.engine.plan import build_plan
from rowloom.engine.progress import RunProgress
from rowloom.engine.resume import Action, decide
from rowloom.engine.storage import ResumeMode, WrittenRowGroup
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import ConfigError, ConfigProblem, RowloomError, RowloomWarning
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.limits import limit_from_config
from rowloom.models.cache import with_cache
from rowloom.observe.context import correlate
from rowloom.observe.events import scheduler as ev
from rowloom.observe.sinks import EventSink, FanoutSink
from rowloom.observe.stats import RequestStats

log = logging.getLogger(__name__)

CHUNKS_PER_WORKER = 4  # a chunk is 1/(4 x workers) of what is left: large early, single row groups at the end
IN_FLIGHT_CHUNKS = 2  # per worker, so one chunk's tail overlaps the next one's start
LEASE_TTL_S = 2.0
LIVENESS_S = 60.0  # a busy worker not heard from this long (it says so every 0.5 s) is dropped as unreachable
SETTLE_TIMEOUT_S = 10.0  # on the way out after a failure: how long the ledger may take to hand over what it holds


_END = "end of the ledger"


class LedgerBuffer:
    """What workers deliver, in arrival order, until the driver takes it (the body of the ledger actor)."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._arrived = asyncio.Event()

    def put(self, item: Any) -> None:
        self._items.append(item)
        self._arrived.set()

    async def take(self) -> list[Any]:
        """Everything delivered since the last take; waits for at least one item."""
        await self._arrived.wait()
        items, self._items = self._items, []
        self._arrived.clear()
        return items


def _actor_classes(ray: Any) -> tuple[Any, Any, Any]:
    """The Ray actor classes, defined on first use so importing rowloom never imports Ray."""

    @ray.remote
    class LedgerActor:
        def __init__(self) -> None:
            self.buffer = LedgerBuffer()

        async def put(self, item: Any) -> None:
            self.buffer.put(item)

        async def take(self) -> list[Any]:
            return await self.buffer.take()

    @ray.remote
    class AuthorityActor:
        def __init__(self, label: str, config: DatasetConfig, ceiling: int, lease_ttl_s: float):
            settings = config.run.request_admission
            cooldown = Cooldown(
                threshold=settings.consecutive_429_pause,
                default_s=settings.default_cooldown_s,
                max_s=settings.max_retry_after_s,
            )
            limit = limit_from_config(settings, ceiling=ceiling, clock=_system_clock())
            self.core = CapacityAuthority(label, limit, cooldown=cooldown, lease_ttl_s=lease_ttl_s)

        def renew(self, report: Report) -> Grant:
            return self.core.renew(report)

        def snapshot(self) -> dict[str, object]:
            return self.core.snapshot()

    @ray.remote
    class WorkerActor:
        def __init__(self, worker: str, job: str, config, num_records, output, seed, authorities, ledger, cuts):
            self.ledger = ledger

            async def renew(label: str, report: Report) -> Grant:
                return await authorities[label].renew.remote(report)

            def deliver(delivery: Delivery) -> None:  # blocks until the ledger holds it: a chunk ends after
                ray.get(ledger.put.remote(delivery))  # its parts are delivered, so the driver sees them first

            self.engine = WorkerEngine(
                worker, job, config, num_records, output, seed, renew, deliver, extended_from=cuts
            )
            self.starting: asyncio.Future[None] | None = None

        async def run(self, indices: list[int]) -> list[int]:
            if self.starting is None:  # chunks run concurrently: the first starts the engine, all await it
                self.starting = asyncio.ensure_future(self.engine.start())
            await asyncio.shield(self.starting)
            return await self.engine.run(indices)

        async def close(self) -> None:
            await self.engine.close()

    return AuthorityActor, WorkerActor, LedgerActor


def _system_clock():
    from rowloom.concurrency.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK


@dataclass
class DistributedRun:
    """What the driver knows while a run goes on: live workers, chunks out, parts recorded, re-assignments."""

    job: str
    workers: dict[str, Any] = field(default_factory=dict)
    outstanding: dict[Any, tuple[str, list[int]]] = field(default_factory=dict)
    reassigned: int = 0
    workers_lost: int = 0


def start_local_ray(ray: Any, num_cpus: int | None = None) -> None:
    """Start a local Ray instance of `num_cpus` (default: the machine's), reachable from this machine only.

    Ray's control plane (GCS, raylets, workers) runs whatever code a caller sends it; a local instance has no
    business on the network, yet Ray resolves `127.0.0.1` to the machine's routable address unless it is told
    the instance is not a cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`, read once into `ENABLE_RAY_CLUSTER`:
    what macOS and Windows get by default). Token auth stays on, as Ray enables it for a new local instance;
    setting its mode explicitly only spares every run Ray's warning that it chose the mode by itself. A mode the
    user set is kept.
    """
    from ray._private import ray_constants

    if "RAY_AUTH_MODE" not in os.environ:
        from ray._raylet import Config

        os.environ["RAY_AUTH_MODE"] = "token"  # for this process and the instance's; Ray reads it at import,
        Config.initialize("")  # so its config is re-read, as Ray does when it turns token auth on itself
    cluster = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    finally:
        if cluster is None:
            del ray_constants.ENABLE_RAY_CLUSTER
        else:
            ray_constants.ENABLE_RAY_CLUSTER = cluster


def _init_ray(ray: Any, address: str | None) -> bool:
    """Connect to `address`, or start a local instance sized to the machine; True when we started it."""
    if ray.is_initialized():
        return False
    if address is None:
        start_local_ray(ray)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


@holding_writer_lock  # taken before the folder is read: no other run changes it until this one ends
def run_distributed(
    config: DatasetConfig,
    num_records: int,
    *,
    output: str | Path | OutputLocation,
    resume: ResumeMode = "auto",
    sink: EventSink | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: RunProgress | None = None,
    on_start: Callable[[RequestStats], None] | None = None,
    on_row_group: Callable[[WrittenRowGroup, DistributedRun], None] | None = None,
    liveness_s: float = LIVENESS_S,
    terms: Terms = CLI_TERMS,
) -> JobResult:
    """Generate `num_records` rows into `output` with worker actors on Ray (blocking; the driver is this thread).

    `output` is a local folder or any `pyarrow.fs` URI every worker can reach. `progress` is kept current as
    parts arrive and `on_start(stats)` hands over the merged request stats (both for a live display); it is
    called once Ray runs, so a signal handler it sets replaces the one `ray.init` installs. A worker with row
    groups that has not been heard from for `liveness_s` is stopped and its row groups go to a new one, as
    after a crash. A folder that already holds this complete run is left as it is, before Ray is started; a
    shorter run is extended, as in a local run (`engine.resume`). The reply cache is resolved here (`run.cache`,
    else this process's environment): every worker uses that folder, shared when the path is on a shared
    filesystem.
    """
    started = time.monotonic()
    config = with_cache(config)
    if config.run.budget is not None:
        # Each worker has its own request path: a budget would be enforced once per worker, not once per run.
        raise ConfigError(
            ConfigProblem(
                "run.budget",
                "is enforced by the local executor only; under Ray each worker would spend it again",
                "remove run.budget for this run, or run without --executor ray",
            )
        )
    batched = [(i, m.alias) for i, m in enumerate(config.models) if m.execution == "batch"]
    if batched:
        # One journal and one poller per batch model: Ray workers would each gather and submit their own.
        i, alias = batched[0]
        raise ConfigError(
            ConfigProblem(
                f"models[{i}] ({alias}).execution",
                "is batch, which runs in one process: a batch is as big as the rows waiting for it in that process",
                "run without --executor ray (a batch run spends its time waiting, not computing)",
            )
        )
    location = OutputLocation.of(output, terms)
    check_export_target(config, location, terms)
    decision = decide(location, config, num_records, resume, terms)
    if decision.recovered_from:
        recover_manifest(location, decision)
    if decision.action is Action.DONE:
        return JobResult.already_complete(location, decision)
    ray = import_ray()
    plan = build_plan(config, num_records, decision.extended_from)
    seed = choose_seed(config, decision)
    store = DriverStore(location, config, plan, num_records, seed)
    store.inputs = run_inputs.settle(config, decision.manifest, location, terms)
    store.open(decision.manifest, decision.extended_from, terms, decision.accounts)
    stats = RequestStats()
    events = FanoutSink([stats, store.ledger, *([sink] if sink is not None else [])])
    progress = progress or RunProgress()
    resumed = sum(w.rows for w in store.written.values())
    progress.begin(records_total=num_records, row_groups_total=len(plan.row_groups), records_resumed=resumed)
    run = DistributedRun(job=uuid.uuid4().hex[:12])
    book = DeliveryBook(store, progress, events, None if on_row_group is None else lambda e: on_row_group(e, run))
    status, message = "completed", ""
    owns_ray = _init_ray(ray, ray_address)
    authorities: dict[str, Any] = {}
    ledger = None
    pending = None  # the one take on the ledger the driver always has out
    features: dict[str, Any] = {}
    try:
        if on_start is not None:
            on_start(stats)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        count = workers or max(1, int(cpus))
        AuthorityActor, WorkerActor, LedgerActor = _actor_classes(ray)
        for label, endpoint in endpoints_of(config).items():
            authorities[label] = AuthorityActor.options(num_cpus=0).remote(label, config, endpoint.ceiling, LEASE_TTL_S)
        ledger = LedgerActor.options(num_cpus=0).remote()
        todo: deque[int] = deque(g.index for g in plan.row_groups if g.index not in store.written)
        serial = 0

        def spawn() -> str:
            nonlocal serial
            worker = f"w{serial}"
            serial += 1
            run.workers[worker] = WorkerActor.options(num_cpus=min(1.0, cpus / count), max_restarts=0).remote(
                worker, run.job, config, num_records, location, seed, authorities, ledger, decision.extended_from
            )
            return worker

        def assign() -> None:
            for worker, handle in list(run.workers.items()):
                busy = sum(1 for w, _ in run.outstanding.values() if w == worker)
                while busy < IN_FLIGHT_CHUNKS and todo:
                    # Guided self-scheduling: chunks shrink with the work left, so the workers finish together.
                    size = max(1, math.ceil(len(todo) / (len(run.workers) * CHUNKS_PER_WORKER)))
                    chunk = [todo.popleft() for _ in range(min(size, len(todo)))]
                    run.outstanding[handle.run.remote(chunk)] = (worker, chunk)
                    busy += 1

        def lose(worker: str) -> None:
            """A worker died or cannot be reached: stop it (unreachable is not dead: it could go on writing), keep
            the parts it delivered, ignore whatever it delivers later, and hand its other row groups out again."""
            nonlocal pending
            ray.kill(run.workers.pop(worker), no_restart=True)
            pending = _settle(ray, ledger, pending, book.take)
            book.drop(worker)
            rest: list[int] = []
            for ref, (w, chunk) in list(run.outstanding.items()):
                if w == worker:
                    run.outstanding.pop(ref)
                    rest += [i for i in chunk if i not in store.written]
            run.workers_lost += 1
            run.reassigned += len(rest)
            todo.extendleft(sorted(rest, reverse=True))  # first out again, in order
            spawn()

        def busy() -> set[str]:
            return {w for w, _ in run.outstanding.values()}

        with correlate(job=run.job):
            for _ in range(count):
                spawn()
            events.emit(
                ev.JobStarted(
                    num_records=num_records,
                    row_groups=len(plan.row_groups),
                    resumed_row_groups=len(store.written),
                    columns=[c.name for c in plan.columns],
                    capacities={label: {"workers": count} for label in authorities},
                )
            )
            assign()
            # Wake on whatever comes first: a delivery on the ledger, the end of a chunk, or a busy worker's
            # silence. A chunk ends only after its deliveries reached the ledger, so the pending take is settled
            # before a chunk is judged.
            pending = ledger.take.remote()
            while run.outstanding:
                wait_s = book.next_deadline(busy(), liveness_s)
                ready, _ = ray.wait([pending, *run.outstanding], num_returns=1, timeout=wait_s)
                if not ready:
                    for worker in book.silent(busy(), liveness_s):
                        warnings.warn(
                            f"Ray worker {worker} sent nothing for {liveness_s:.0f} s while it had row groups to "
                            "write: it was stopped and its row groups go to a new worker",
                            RowloomWarning,
                            stacklevel=1,
                        )
                        lose(worker)
                elif ready[0] == pending:
                    book.take(ray.get(pending))
                    pending = ledger.take.remote()
                    continue
                else:
                    ref = ready[0]
                    try:
                        ray.get(ref)
                        run.outstanding.pop(ref)
                    except ray.exceptions.RayActorError:  # died, or unreachable (ActorUnavailableError)
                        lose(run.outstanding[ref][0])
                    except ray.exceptions.RayTaskError as exc:
                        raise exc.as_instanceof_cause() from None
                assign()
            pending = _settle(ray, ledger, pending, book.take)
            missing = [g.index for g in plan.row_groups if g.index not in store.written]
            if missing:
                raise RowloomError(f"row groups {missing[:10]} were never written; re-run to resume them")
            if config.export is not None:
                features["export"] = export_output(config, location)
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted by the user"
        raise
    except BaseException as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:

        def hand_over() -> None:  # after a failure or an interrupt: what workers delivered is finished work
            if status != "completed" and pending is not None:
                _settle(ray, ledger, pending, book.take, timeout_s=SETTLE_TIMEOUT_S)

        snapshots = _close_actors(ray, run, authorities, ledger, hand_over)
        strays = _remove_strays(store)
        wall = time.monotonic() - started
        summary = build_summary(config, num_records, store, progress, stats, wall, status, message, seed)
        summary.update(features)
        summary["executor"] = {
            "kind": "ray",
            "workers": len(run.workers) + run.workers_lost,
            "workers_lost": run.workers_lost,
            "row_groups_reassigned": run.reassigned,
            "parts_discarded": len(book.discarded) + len(strays),
            "authorities": snapshots,
        }
        with correlate(job=run.job):
            end_job(events, summary, store, wall_s=wall)
        if owns_ray:
            ray.shutdown()
    return JobResult.written(store, summary)


def _settle(
    ray: Any, ledger: Any, pending: Any, take: Callable[[list[Delivery]], None], timeout_s: float | None = None
) -> Any:
    """Take everything delivered so far: mark the ledger's end, read up to the mark; returns a new pending take."""
    ledger.put.remote(_END)
    done = False
    while not done:
        items = ray.get(pending, timeout=timeout_s)
        done = _END in items
        take([item for item in items if item != _END])
        pending = ledger.take.remote()
    return pending


def _close_actors(
    ray: Any, run: DistributedRun, authorities: dict[str, Any], ledger: Any, hand_over: Callable[[], None]
) -> dict[str, Any]:
    """Let workers give their grants back and stop them, `hand_over()` what reached the ledger, read the
    authorities' final state, then end every other actor. Each step runs whatever the one before it raised."""
    closing = [handle.close.remote() for handle in run.workers.values()]
    snapshots: dict[str, Any] = {}
    try:
        ray.get(closing, timeout=10)
    except Exception as exc:  # a worker that died holds nothing: its grants lapse with their lease
        log.warning("a worker did not close cleanly (%s: %s)", type(exc).__name__, exc)
    for handle in run.workers.values():  # stopped before the hand-over: nothing is delivered after it
        ray.kill(handle)
    if ledger is not None:
        try:
            hand_over()
        except Exception as exc:  # what stays unlisted is generated again by the next run
            log.warning("parts delivered last could not be listed (%s: %s)", type(exc).__name__, exc)
    try:
        states = ray.get([a.snapshot.remote() for a in authorities.values()], timeout=10)
        snapshots = dict(zip(authorities, states, strict=True))
    except Exception as exc:
        log.warning("an authority did not report its final state (%s: %s)", type(exc).__name__, exc)
    for handle in authorities.values():
        ray.kill(handle)
    if ledger is not None:
        ray.kill(ledger)
    return snapshots


def _remove_strays(store: DriverStore) -> list[str]:
    """Parts no manifest entry names, removed once every worker is stopped (their names, for the summary)."""
    try:
        return store.remove_strays()
    except OSError as exc:  # they are never read: the manifest lists the parts
        log.warning("unlisted parts in %s could not be removed (%s)", store.location, exc)
        return []
