"""The run loop: select -> admit -> dispatch -> complete -> checkpoint, on one asyncio event loop.

Each concern lives in its own module (ready queue, task admission, frontier, completion, storage); this module
only drives them. Nothing here polls: the loop sleeps until a task, a checkpoint or a timer wakes it.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.concurrency.fair_queue import Selection
from rowloom.config.dataset import DatasetConfig
from rowloom.config.scheduling import ResourceClass
from rowloom.engine.completion import RowGroupState, Task
from rowloom.engine.generators.base import BatchContext, CellFailed, FailedCell, Generator, rng_for
from rowloom.engine.plan import Plan, RowGroupSpec
from rowloom.engine.progress import RunProgress
from rowloom.engine.scheduling.frontier import Frontier, FrontierSignals, hard_cap
from rowloom.engine.scheduling.ports import Checkpointer, EndpointView, PoolReads, model_pool, model_slots
from rowloom.engine.scheduling.ready_queue import QueuedTask, ReadyQueue, TaskGroup
from rowloom.engine.scheduling.task_admission import Policy, TaskAdmissionController, TaskLease
from rowloom.errors import BudgetReached, RowloomError, RunAborted, RunInterrupted
from rowloom.models.budget import SpendBudget
from rowloom.observe.context import correlate
from rowloom.observe.events import scheduler as ev
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.sinks import EventSink, NullSink


@dataclass(slots=True)
class _Running:
    task: Task
    group: TaskGroup
    lease: TaskLease
    started: float


class Scheduler:
    """Runs the tasks of a plan to completion, writing each complete row group through the checkpointer."""

    def __init__(
        self,
        *,
        config: DatasetConfig,
        plan: Plan,
        generators: Mapping[str, Generator],
        checkpointer: Checkpointer,
        endpoints: EndpointView,
        seed: int,
        skip_row_groups: frozenset[int] = frozenset(),
        progress: RunProgress | None = None,
        sink: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        policy: Policy | None = None,
        health_interval_s: float = 5.0,
        health_clock: Clock | None = None,
        max_advisory_skips: int = 8,
        budget: SpendBudget | None = None,
    ):
        self.config = config
        self.plan = plan
        self.generators = generators
        self.checkpointer = checkpointer
        self.endpoints = endpoints
        self.seed = seed
        self.sink = sink or NullSink()
        self.clock = clock
        self.progress = progress or RunProgress()
        self.health_interval_s = health_interval_s
        self.health_clock = health_clock or clock  # times the periodic health snapshot; the run's clock by default
        self.max_advisory_skips = max_advisory_skips
        self.budget = budget
        run = config.run

        self.pending: deque[RowGroupSpec] = deque(g for g in plan.row_groups if g.index not in skip_row_groups)
        self._rows_this_run = max(1, sum(g.count for g in self.pending))
        self.active: dict[int, RowGroupState] = {}
        self.ready = ReadyQueue()
        self.admission = TaskAdmissionController(policy=policy or Policy(run.task_policy), clock=clock)
        batched = {m.alias for m in config.models if m.execution == "batch"} & set(plan.model_aliases)
        self.frontier = Frontier(
            initial=run.initial_row_groups_in_flight,
            hard_cap=hard_cap(run, batched=bool(batched)),
            max_admitted_rows=run.max_admitted_rows,
            clock=clock,
        )
        self._groups: dict[str, TaskGroup] = {}
        for column in plan.columns:
            pool = self._pool_of(column.model_alias, column.metadata.resource_class)
            self._groups[column.name] = TaskGroup(column.name, pool, column.metadata.weight)
        for alias in plan.model_aliases:
            # Tasks sleeping before a retry (e.g. a 429's Retry-After) hold no request slot: they do not count.
            self.admission.add_pool(
                model_pool(alias), lambda a=alias: model_slots(endpoints.capacity(a)) + endpoints.backing_off(a)
            )
        self.admission.add_pool(ResourceClass.CPU.value, run.cpu_slots or os.cpu_count() or 1)
        self.admission.add_pool(ResourceClass.IO.value, max(8, (os.cpu_count() or 1) * 4))

        self._running: dict[asyncio.Task[Any], _Running] = {}
        self._checkpoints: set[asyncio.Task[None]] = set()
        self._unwritten_rows = 0  # rows of complete row groups not yet written
        self._completions: deque[tuple[_Running, asyncio.Task[Any]]] = deque()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._stop_reason: str | None = None
        self._fatal: BaseException | None = None
        # The budget refused a request: no row group is admitted any more, row groups with a refused cell are
        # left unfinished, the others run on as far as the budget lets them, and the run then stops with this.
        self._budget_reached: BudgetReached | None = None
        self._unfinished: set[int] = set()
        self._writer_failed = False  # the output itself failed: nothing more is written
        self._skips: Counter[str] = Counter()
        self._recent: deque[bool] = deque(maxlen=run.error_window)  # True = dropped
        self._health_due = False

    # ------------------------------------------------------------ public

    def stop(self, reason: str = "interrupted") -> None:
        """Stop admitting work and wind down (safe to call from a signal handler on the loop)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake.set()

    async def run(self) -> None:
        """Run every pending row group; raise `RunAborted` (or the fatal error) if the run cannot finish."""
        self._health_ticks = asyncio.get_running_loop().create_task(self._tick_health())
        try:
            while True:
                self._process_completions()
                if self._fatal is not None or self._stop_reason is not None:
                    break
                self._admit_row_groups()
                self._dispatch()
                if self._budget_reached is not None and not self._running and not self._completions:
                    break  # what the budget let run has finished: the complete row groups are being written
                self._adapt_frontier()
                if self._health_due:
                    self._health_due = False
                    self.sink.emit(self.health_snapshot())
                    if hasattr(self.endpoints, "snapshot"):  # request admission's capacity, beside the health
                        self.sink.emit(CapacitySnapshot.of(self.endpoints.snapshot(), "health"))
                if not (self.pending or self.active or self._running or self._checkpoints):
                    return
                if not self._completions:
                    self._wake.clear()
                    await self._wake.wait()
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal
        if self._budget_reached is not None:
            raise self._budget_reached
        # What is on disk (if anything: a preview writes nothing) is for the caller to say, who knows the output.
        raise RunInterrupted(f"run {self._stop_reason}: {self.progress.records_written} records written in this run")

    # ------------------------------------------------------------ select -> admit -> dispatch

    def _pool_of(self, alias: str | None, resource: ResourceClass) -> str:
        if resource is ResourceClass.LLM_WAIT and alias is not None:
            return model_pool(alias)
        return ResourceClass.CPU.value if resource is ResourceClass.LLM_WAIT else resource.value

    def _admitted_rows(self) -> int:
        return sum(s.spec.count for s in self.active.values())

    def _writer_lags(self, next_rows: int) -> bool:
        """Complete row groups waiting for the writer would, with the next one, exceed the memory bound.

        The frontier counts only row groups being generated; when generation outpaces writing (cheap columns,
        a slow disk) the complete ones pile up in memory, so admission also waits for the writer then."""
        unwritten = self._unwritten_rows
        return unwritten > 0 and unwritten + self._admitted_rows() + next_rows > self.config.run.max_admitted_rows

    def _admit_row_groups(self) -> None:
        while self.pending and self._budget_reached is None:
            spec = self.pending[0]
            if self._writer_lags(spec.count):
                return  # woken again when a checkpoint finishes
            ok, _ = self.frontier.may_admit(len(self.active), self._admitted_rows(), spec.count)
            if not ok or not self._budget_room(spec.count):
                return
            self.pending.popleft()
            state = RowGroupState(self.plan, spec, on_row_done=self.progress.row_done)
            self.active[spec.index] = state
            self.progress.row_groups_in_flight = len(self.active)
            with correlate(row_group=spec.index):
                self.sink.emit(ev.RowGroupAdmitted(rows=spec.count, in_flight=len(self.active)))
            self._enqueue(state.initial_tasks())

    def _budget_room(self, rows: int) -> bool:
        """Near its budget a run finishes the row groups it started before it starts more: a row group cut short
        by the budget is paid for and not written. With none in flight one is always started (the budget's
        reservations then decide)."""
        if self.budget is None or not self.active:
            return True
        unfinished = sum(s.spec.count - s.rows_done - len(s.dropped) for s in self.active.values())
        return self.budget.room_for(rows, unfinished, self.progress.rows_finished)

    def _enqueue(self, tasks: list[Task]) -> None:
        now = self.clock.now()
        for task in tasks:
            group = self._groups[task.column]
            self.ready.push(task, group, now)
            # The task's ids given, not set around the event: `correlate` costs more than the event itself.
            self.sink.emit(
                ev.TaskQueued(
                    group=group.key, pool=group.pool, row_group=task.row_group, column=task.column, task=task.id
                )
            )

    def _saturated(self, pool: str) -> bool:
        return pool.startswith("model:") and self.endpoints.saturated(pool.removeprefix("model:"))

    def _select_next(self, pool_saturated: PoolReads) -> tuple[Selection[str, QueuedTask], bool] | None:
        """The task fairness and pressure advice say goes next among eligible groups, and whether its lease would
        be borrowed; it stays queued until admitted. `pool_saturated`: the pass's reads of saturation."""
        has_room = PoolReads(lambda pool: self.admission.free(pool) > 0)
        borrows: dict[str, bool] = {}  # eligible group -> whether its lease would be borrowed

        def eligible(group: TaskGroup) -> bool:
            if not has_room[group.pool]:
                return False
            # Judged on the view taken while the task is still queued: its group counts as waiting with its own
            # weight (taken first, its last task would be judged at the default weight).
            allowed, _, borrowed = self.admission.admissible(group.pool, group.key, self.ready.waiting(group.pool))
            if allowed:
                borrows[group.key] = borrowed
            return allowed

        if not any(has_room[pool] for pool in self.ready.pools()):
            return None  # every pool with queued work is full: no group could be eligible
        head = self.ready.select(eligible)
        if head is None:
            return None
        group = head.item.group
        if (
            pool_saturated[group.pool]
            and self._skips[group.key] < self.max_advisory_skips
            and any(not pool_saturated[pool] for pool in self.ready.pools())
        ):
            alt = self.ready.select(lambda g: not pool_saturated[g.pool] and eligible(g))
            if alt is not None:
                self._skips[group.key] += 1
                self.sink.emit(
                    ev.AdvisorySkip(skipped_group=group.key, chosen_group=alt.item.group.key, pressured_pool=group.pool)
                )
                return alt, borrows[alt.item.group.key]
        self._skips[group.key] = 0
        return head, borrows[group.key]

    def _dispatch(self) -> None:
        with self.admission.decisions():
            self._dispatch_pass()
        self.progress.active_tasks = len(self._running)

    def _dispatch_pass(self) -> None:
        """Start tasks while a group is eligible. Nothing awaits in a pass: what eligibility read still holds when
        the lease is taken, and no endpoint's saturation changes within it (the tasks started run after it)."""
        pool_saturated = PoolReads(self._saturated)
        while (chosen := self._select_next(pool_saturated)) is not None:
            selection, borrowed = chosen
            item = selection.item
            task, group = item.task, item.group
            self.ready.commit(selection)
            state = self.active.get(task.row_group)
            if state is None or state.is_dropped(task.row) or task.row_group in self._unfinished:
                continue  # its row was dropped while it waited, or its row group cannot finish in this run
            lease = self.admission.grant(group.pool, group.key, borrowed=borrowed)
            now = self.clock.now()
            running = _Running(task, group, lease, now)
            with correlate(row_group=task.row_group, column=task.column, task=task.id):
                self.sink.emit(
                    ev.TaskAdmitted(group=group.key, pool=group.pool, lease=lease.id, queued_s=now - item.queued_at)
                )
                atask = asyncio.get_running_loop().create_task(self._execute(task, state))
            self._running[atask] = running
            atask.add_done_callback(self._on_task_done)

    async def _execute(self, task: Task, state: RowGroupState) -> Any:
        generator = self.generators[task.column]
        column = self.plan.column(task.column)
        if task.row is not None:
            return await generator.cell(state.row_values(task.row, column.inputs))
        ctx = BatchContext(
            spec=state.spec,
            rng=rng_for(self.seed, task.column, state.spec.stream),
            inputs=state.column_values(column.inputs),
            live_rows=state.live_rows,
        )
        return await generator.batch(ctx)

    # ------------------------------------------------------------ complete

    def _on_task_done(self, atask: asyncio.Task[Any]) -> None:
        running = self._running.pop(atask)
        self.admission.release(running.lease)  # released here, on every path, before anything else
        self._completions.append((running, atask))
        self._wake.set()

    def _process_completions(self) -> None:
        while self._completions:
            running, atask = self._completions.popleft()
            task = running.task
            outcome, reason = "done", ""
            state = self.active.get(task.row_group)
            if atask.cancelled():
                outcome = "cancelled"
            elif (exc := atask.exception()) is None:
                if state is not None:
                    if task.row is None:
                        values = atask.result()
                        self._drop_failed_rows(state, task.column, values)
                        self._enqueue(state.mark_batch_done(task.column, values))
                    else:
                        self._enqueue(state.mark_cell_done(task.column, task.row, atask.result()))
            elif isinstance(exc, BudgetReached):
                outcome, reason = "stopped", "budget_reached"
                self._budget_reached = self._budget_reached or exc
                self._unfinished.add(task.row_group)  # a cell of it was refused: written by a later run
            elif isinstance(exc, CellFailed) and task.row is not None:
                outcome, reason = "dropped", exc.reason
                if state is not None and not state.is_dropped(task.row):
                    self._enqueue(state.drop_row(task.row, f"{task.column}:{exc.reason}"))
                    self._note_rows(dropped=[f"{task.column}:{exc.reason}"])
            else:
                outcome, reason = "failed", type(exc).__name__
                self._fail(exc, task)
            self.sink.emit(
                ev.TaskReleased(
                    group=running.group.key,
                    pool=running.group.pool,
                    lease=running.lease.id,
                    outcome=outcome,
                    reason=reason,
                    run_s=self.clock.now() - running.started,
                    row_group=task.row_group,
                    column=task.column,
                    task=task.id,
                )
            )
            # A complete row group is finished work: kept after any fatal error but the output's own.
            if state is not None and state.complete and not self._writer_failed:
                self._start_checkpoint(state)
        self.progress.active_tasks = len(self._running)

    def _drop_failed_rows(self, state: RowGroupState, column: str, values: list[Any]) -> None:
        """Rows a batch generator could not produce (`FailedCell`) are dropped and counted like failed cells."""
        for row, value in enumerate(values):
            if isinstance(value, FailedCell) and not state.is_dropped(row):
                reason = f"{column}:{value.reason}"
                self._enqueue(state.drop_row(row, reason))
                self._note_rows(dropped=[reason])

    def _fail(self, exc: BaseException, task: Task) -> None:
        if self._fatal is not None:
            return
        if not isinstance(exc, RowloomError):
            exc.add_note(f"rowloom: raised while computing column {task.column!r} (task {task.id})")
        self._fatal = exc

    def _note_rows(self, *, written: int = 0, dropped: list[str] | None = None) -> None:
        for reason in dropped or []:
            self.progress.rows_dropped += 1
            self.progress.dropped_by_reason[reason] += 1
            self._recent.append(True)
        self._recent.extend([False] * min(written, self._recent.maxlen or written))
        # The rate is judged over the last `error_window` rows, or over the whole run when it is shorter.
        window = min(self._recent.maxlen or 1, self._rows_this_run)
        drops = sum(self._recent)
        if (
            len(self._recent) >= window
            and drops > self.config.run.max_error_rate * len(self._recent)
            and (self._fatal is None)
        ):
            causes = ", ".join(f"{r} ({n})" for r, n in self.progress.dropped_by_reason.most_common(5))
            self._fatal = RunAborted(
                f"stopped early: {drops} of the last {len(self._recent)} rows were dropped "
                f"(max_error_rate {self.config.run.max_error_rate}); causes: {causes}"
            )

    # ------------------------------------------------------------ checkpoint

    def _start_checkpoint(self, state: RowGroupState) -> None:
        del self.active[state.index]
        self.progress.row_groups_in_flight = len(self.active)
        self._unwritten_rows += state.spec.count
        checkpoint = asyncio.get_running_loop().create_task(self._checkpoint(state))
        self._checkpoints.add(checkpoint)
        checkpoint.add_done_callback(self._on_checkpoint_done)

    async def _checkpoint(self, state: RowGroupState) -> None:
        try:
            async with self._write_lock:  # one writer: files and manifest stay in a consistent order
                if self._writer_failed:  # the output failed: nothing more is written, not even queued groups
                    return
                try:
                    where = await asyncio.to_thread(self.checkpointer.write, state)
                except BaseException:
                    self._writer_failed = True  # now, not when this task's callback runs: the next may hold the lock
                    raise
        finally:
            self._unwritten_rows -= state.spec.count
        rows, dropped = len(state.live_rows), sorted(state.dropped)
        self.progress.records_written += rows
        self.progress.row_groups_written += 1
        self._note_rows(written=rows)
        with correlate(row_group=state.index):
            self.sink.emit(ev.RowGroupCheckpointed(rows=rows, dropped=len(dropped), file=where, dropped_rows=dropped))

    def _on_checkpoint_done(self, checkpoint: asyncio.Task[None]) -> None:
        self._checkpoints.discard(checkpoint)
        if not checkpoint.cancelled() and (exc := checkpoint.exception()) is not None:
            self._writer_failed = True
            if self._fatal is None:
                self._fatal = exc
        self._wake.set()

    # ------------------------------------------------------------ frontier and health

    def _model_pools(self) -> list[str]:
        return [p for p in self.admission.pools if p.startswith("model:")]

    def _adapt_frontier(self) -> None:
        pools = self._model_pools()
        if not pools:
            starved = not self.ready and bool(self.pending)
            slots = 0
        else:
            starved = bool(self.pending) and any(self.admission.free(p) > 0 and self.ready.depth(p) == 0 for p in pools)
            slots = sum(self.admission.capacity(p) for p in pools)
        signals = FrontierSignals(
            starved=starved,
            paused=any(self._paused(p.removeprefix("model:")) for p in pools),
            queued_demand=sum(self.ready.depth(p) for p in pools),
            model_slots=slots,
            admitted_rows=self._admitted_rows(),
        )
        change = self.frontier.update(signals)
        if change is not None:
            old, new, reason = change
            self.sink.emit(ev.FrontierChanged(old=old, new=new, reason=reason))
            if new > old:
                self._admit_row_groups()
                self._dispatch()

    def _paused(self, alias: str) -> bool:
        """Cooling down or down: more admitted rows would only wait, so the frontier must not widen."""
        return self.endpoints.cooling(alias) or self.endpoints.down(alias)

    async def _tick_health(self) -> None:
        """Every `health_interval_s` of the health clock, have the run loop emit a health snapshot."""
        while True:
            await self.health_clock.sleep(self.health_interval_s)
            self._health_due = True
            self._wake.set()

    def health_snapshot(self) -> ev.HealthSnapshot:
        """The scheduler's state now: tasks, frontier and why it is not wider, demand and leases per pool."""
        pools = {
            p: {
                "capacity": self.admission.capacity(p),
                "in_use": self.admission.in_use(p),
                "queued": self.ready.depth(p),
            }
            for p in self.admission.pools
        }
        endpoints = {a: {"saturated": self.endpoints.saturated(a)} for a in self.plan.model_aliases}
        pending = self.pending[0].count if self.pending else 0
        _, why = self.frontier.may_admit(len(self.active), self._admitted_rows(), pending)
        return ev.HealthSnapshot(
            active_tasks=len(self._running),
            admitted_rows=self._admitted_rows(),
            row_groups_in_flight=len(self.active),
            frontier_target=self.frontier.target,
            frontier_limited_by=why or ("no_pending_row_groups" if not self.pending else ""),
            pools=pools,
            endpoints=endpoints,
        )

    # ------------------------------------------------------------ shutdown

    async def _shutdown(self) -> None:
        self._health_ticks.cancel()
        for atask in list(self._running):
            atask.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        # Let the done callbacks run, then drain completions so every lease is released and counted.
        await asyncio.sleep(0)
        self._process_completions()
        if self._checkpoints:
            await asyncio.gather(*self._checkpoints, return_exceptions=True)
