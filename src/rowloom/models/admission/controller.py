"""`RequestAdmissionController`: when may a model request go out — leases, waiter queues, cooldowns, caps.

Owns admission decisions per resource key; the limit algorithms, fair queue, pause evidence, endpoint health and
budgets are parts it drives, and a release's feedback path is `release.ReleasePath`. It must not call providers or
classify errors (that is the executor's job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.concurrency.fair_queue import Selection
from rowloom.concurrency.loops import running_loop
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError
from rowloom.models.admission.endpoint import EndpointState, Waiter
from rowloom.models.admission.errors import AdmissionClosed, AdmissionTimeout, saturated
from rowloom.models.admission.keys import ResourceKey
from rowloom.models.admission.leases import LeaseLedger, RequestLease
from rowloom.models.admission.limits import Limit, limit_from_config
from rowloom.models.admission.pool_admission import PooledAdmission
from rowloom.models.admission.registry import EndpointRegistry, LimitBounds, LimitFactory
from rowloom.models.admission.release import ReleasePath
from rowloom.models.admission.threads import LoopBinding
from rowloom.models.admission.views import AdmissionViews
from rowloom.models.types import Outcome
from rowloom.observe.context import Correlation
from rowloom.observe.events.base import Event
from rowloom.observe.events.request import CooldownEnded, RequestAdmitted, RequestQueued
from rowloom.observe.sinks import EventSink, NullSink, guarded


def _ids(c: Correlation) -> dict[str, Any]:
    """A correlation's ids as event fields (explicit: `dataclasses.asdict` costs ~35 µs per admission)."""
    return {"job": c.job, "row_group": c.row_group, "column": c.column, "task": c.task, "attempt": c.attempt}


class RequestAdmissionController(PooledAdmission, ReleasePath, AdmissionViews):
    """Adaptive admission per `ResourceKey`: a limit, a weighted fair queue of waiters, cooldowns, caps.

    Waiters are woken by the release (or timer) that frees capacity — futures, never polling. Every acquire
    returns a `RequestLease` that must be released exactly once with its outcome; `release` reports
    duplicates, unknown and stale leases without touching the accounting. Not thread-safe by itself: it
    belongs to one event loop, and calls from other threads (`acquire_blocking`, `release`) hop onto it.
    """

    def __init__(
        self,
        config: RequestAdmissionConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sink: EventSink | None = None,
        limit_factory: LimitFactory | None = None,
    ):
        self.config = config or RequestAdmissionConfig()
        self._clock = clock
        # Emitting happens between issuing a lease and handing it over: a sink that raised there would leak the
        # lease or leave a waiter's future unresolved. The guard logs a failing sink once and disables it.
        self._sink = None if sink is None or isinstance(sink, NullSink) else guarded(sink)
        self._ledger = LeaseLedger(memory=self.config.released_lease_memory)
        self._registry = EndpointRegistry(self.config, limit_factory or self._default_limit, clock)
        self._binding = LoopBinding()

    # ------------------------------------------------------------ registration

    def register_model(
        self, alias: str, model: ModelConfig, provider: ProviderConfig, *, domain: str = "chat", pooled: bool = False
    ) -> ResourceKey:
        """Make `alias` admissible; aliases of the same provider, model and domain share one state. `pooled`: this
        is one endpoint of the alias's pool (then `register_pool` it)."""
        return self._registry.register(alias, model, provider, domain, pooled=pooled).key

    def register_pool(
        self, alias: str, members: Sequence[tuple[ResourceKey, bool]], *, spill_after_s: float, domain: str = "chat"
    ) -> None:
        """Make `alias` a pool of the keys its endpoints were registered on (`pooled`), each with whether it is a
        fallback: its requests wait in one fair queue and go to the endpoint with the most headroom."""
        self._registry.register_pool(alias, members, spill_after_s, domain)

    def _default_limit(self, key: ResourceKey, bounds: LimitBounds) -> Limit:
        return limit_from_config(
            self.config, ceiling=bounds.ceiling, clock=self._clock, start=bounds.start, floor=bounds.floor
        )

    # ------------------------------------------------------------ acquire

    async def acquire(
        self,
        alias_or_key: str | ResourceKey,
        *,
        domain: str = "chat",
        group: str = "default",
        weight: float = 1.0,
        tokens: int = 0,
        deadline: float | None = None,
        retry: bool = False,
    ) -> RequestLease:
        """Wait for a request slot and return its lease.

        Waiters queue fairly by `group` (share proportional to `weight`). `tokens` is reserved against a tpm
        budget. `retry` marks a re-admitted attempt, served before first attempts of its group. `deadline` is
        an absolute time on the controller's clock; past it, `AdmissionTimeout`. If the
        caller is cancelled after a lease was assigned but before it resumed, the lease is released.
        """
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return await self._acquire_pooled(pool, group, weight, tokens, deadline, retry)
        state, alias = self._registry.resolve(alias_or_key, domain)
        loop = self._binding.bind()
        if state.failed is not None:
            raise state.failed
        now = self._clock.now()
        if not state.queue and self._can_admit(state, alias, tokens, now):
            return self._admit(state, alias, group, tokens, now, now)
        if deadline is not None and deadline <= now:
            raise self._timeout(state, alias)
        waiter = Waiter(alias, group, tokens, loop.create_future(), now)
        # Within its group a retry waits ahead of first attempts: its row has waited longest and it finishes
        # work already begun (a run's tail is made of such rows).
        state.queue.push((alias, group), waiter, weight=weight, priority=0 if retry else 1)
        self._emit(
            RequestQueued,
            key=state.label,
            alias=alias,
            group=group,
            waiters=len(state.queue),
            in_flight=self._ledger.in_flight(state.key),
            limit=state.limit.limit,
        )
        # Fair order decides who goes when there is room (the waiters ahead may be held by an alias's ceiling or
        # the budget); without room on this key nobody can go, neither its waiters nor its pools'.
        if self._has_room(state, now):
            self._dispatch(state)
        return await self._wait(
            waiter, deadline, state.queue.remove, lambda: self._dispatch(state), lambda: self._timeout(state, alias)
        )

    async def _wait(
        self,
        waiter: Waiter,
        deadline: float | None,
        remove: Callable[[Waiter], bool],
        redispatch: Callable[[], None],
        timeout: Callable[[], AdmissionTimeout],
    ) -> RequestLease:
        """Await a queued waiter's lease. Past `deadline` it leaves its queue (`remove`) with `timeout()`; a
        cancelled caller gives back a lease already handed to it, or leaves the queue; `redispatch` then serves
        the rest (the one that left may have been the head that held them back)."""
        future = waiter.future
        if future.done():
            return future.result()
        timer = None
        if deadline is not None:

            async def expire(at: float) -> None:
                await self._clock.sleep(at - self._clock.now())
                if not future.done():
                    remove(waiter)
                    future.set_exception(timeout())
                    redispatch()

            timer = asyncio.get_running_loop().create_task(expire(deadline))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                if future.exception() is None:
                    self.release(future.result(), Outcome.CANCELLED, rtt_s=0.0)
            elif remove(waiter):
                redispatch()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def try_acquire(
        self, alias_or_key: str | ResourceKey, *, domain: str = "chat", group: str = "default", tokens: int = 0
    ) -> RequestLease | None:
        """A lease if one is free right now and nobody is queued ahead; else None (never waits)."""
        if self._binding.foreign():
            return self._binding.call(self.try_acquire, alias_or_key, domain=domain, group=group, tokens=tokens)
        if (pool := self._registry.pool(alias_or_key, domain)) is not None:
            return self._try_pooled(pool, group, tokens)
        state, alias = self._registry.resolve(alias_or_key, domain)
        if state.failed is not None:
            raise state.failed
        now = self._clock.now()
        if state.queue or not self._can_admit(state, alias, tokens, now):
            return None
        return self._admit(state, alias, group, tokens, now, now)

    def acquire_blocking(
        self,
        alias_or_key: str | ResourceKey,
        *,
        domain: str = "chat",
        group: str = "default",
        weight: float = 1.0,
        tokens: int = 0,
        timeout_s: float | None = None,
    ) -> RequestLease:
        """For synchronous callers on a thread without an event loop; refuses to block a running loop.

        When the controller's loop runs on another thread, waits there (woken like any waiter). Without a
        running loop nothing could free capacity, so it takes a free slot or raises `AdmissionTimeout`.
        """
        if running_loop() is not None:
            raise RowloomError(
                "acquire_blocking() was called on a thread that runs an event loop; blocking there would freeze "
                "every request on it. Use `await controller.acquire(...)` instead."
            )
        if self._binding.serving():
            deadline = None if timeout_s is None else self._clock.now() + timeout_s
            return self._binding.wait(
                lambda: self.acquire(
                    alias_or_key, domain=domain, group=group, weight=weight, tokens=tokens, deadline=deadline
                ),
                lambda lease: self.release(lease, Outcome.CANCELLED, rtt_s=0.0),
            )
        lease = self.try_acquire(alias_or_key, domain=domain, group=group, tokens=tokens)
        if lease is None:
            state, alias = self._registry.resolve(alias_or_key, domain)
            raise self._timeout(state, alias, "and no event loop serves this controller to free one")
        return lease

    # ------------------------------------------------------------ release (`ReleasePath.release`)

    def refresh(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> None:
        """The key's limit grew by itself (a capacity grant was renewed): admit the waiters that now fit, rather
        than at the next release."""
        self._dispatch(self._registry.resolve(alias_or_key, domain)[0])

    # ------------------------------------------------------------ lifecycle

    def fail_key(self, alias_or_key: str | ResourceKey, error: BaseException, *, domain: str = "chat") -> None:
        """Every current waiter and every later acquire on this key raises `error` (the circuit opened)."""
        state, _ = self._registry.resolve(alias_or_key, domain)
        state.failed = error
        self._fail_waiters(state.queue.clear(), error)
        for pool in state.pools:  # a pool fails with its last endpoint; until then the others serve its queue
            if pool.failure() is not None:
                self._fail_waiters(pool.clear(), error)
            else:
                self._dispatch_pool(pool)

    def reset(self) -> None:
        """Start a new generation: forget live leases (their releases become STALE), fail waiters, reopen
        failed keys. Learned limits and cooldowns are kept — they describe the endpoints, not the run."""
        self._ledger.reset()
        for state in self._registry:
            state.failed = None
            state.peak_in_flight = 0
        self._fail_all(AdmissionClosed("request admission was reset while this request waited"))

    def close(self) -> None:
        """Cancel timers and fail every waiter; the controller should not be used afterwards."""
        for state in self._registry:
            state.cancel_timers()
        for pool in self._registry.pools():
            pool.spill_timer.cancel()
        self._fail_all(AdmissionClosed("request admission was closed while this request waited"))

    def _fail_all(self, error: BaseException) -> None:
        """Fail every waiter of every endpoint and every pool."""
        for state in self._registry:
            self._fail_waiters(state.queue.clear(), error)
        for pool in self._registry.pools():
            self._fail_waiters(pool.clear(), error)

    # ------------------------------------------------------------ internals: admission

    def _can_admit(self, state: EndpointState, alias: str | None, tokens: int, now: float) -> bool:
        return (
            self._has_room(state, now)
            and self._alias_room(state, alias)
            and (state.budget is None or state.budget.ready(tokens, now))
        )

    def _has_room(self, state: EndpointState, now: float) -> bool:
        """Key-wide: not cooling down, up (or due a probe), below the limit and below every aggregate cap."""
        if state.cooldown.until is not None and self._cooling(state, now):
            return False
        in_flight = self._ledger.in_flight(state.key)
        if in_flight >= state.limit.limit or not state.health.admits(now, in_flight):
            return False
        count = self._ledger.in_flight
        return all(cap.in_flight(count) < cap.max_in_flight for cap in state.caps)

    def _alias_room(self, state: EndpointState, alias: str | None) -> bool:
        ceiling = state.alias_ceiling(alias)
        return ceiling is None or self._ledger.alias_in_flight(state.key, alias) < ceiling

    def _cooling(self, state: EndpointState, now: float) -> bool:
        if state.cooldown.active(now):
            return True
        if state.cooldown.expire(now):
            self._emit(CooldownEnded, key=state.label)
        return False

    def _admit(
        self,
        state: EndpointState,
        alias: str | None,
        group: str,
        tokens: int,
        now: float,
        queued_at: float,
        correlation: Correlation | None = None,
        queue: str | None = None,
    ) -> RequestLease:
        if state.budget is not None:
            state.budget.take(tokens, now)
        lease = self._ledger.issue(state.key, epoch=state.limit.epoch, now=now, tokens=tokens, group=group, alias=alias)
        state.issued += 1
        in_flight = self._ledger.in_flight(state.key)
        state.peak_in_flight = max(state.peak_in_flight, in_flight)
        self._emit(
            RequestAdmitted,
            key=state.label,
            alias=alias,
            group=group,
            lease=lease.id,
            wait_s=now - queued_at,
            in_flight=in_flight,
            limit=state.limit.limit,
            queue=queue,
            **({} if correlation is None else _ids(correlation)),
        )
        return lease

    def _dispatch(self, state: EndpointState) -> None:
        """Hand free slots to waiters in fair order until the key, every alias or the budget is full: first the
        key's own queue, then the queues of the pools it serves."""
        queue = state.queue
        if queue:
            self._dispatch_own(state)
        for pool in state.pools:
            if pool.queue:
                self._serve(pool, pool.member(state))

    def _dispatch_own(self, state: EndpointState) -> None:
        queue = state.queue
        # A waiter's alias is judged only when an alias's ceiling can bind: the key's room is the aliases' then.
        eligible = (lambda group: self._alias_room(state, group[0])) if state.alias_bound else None
        self._hand_out(state, lambda: queue.select_next(eligible), queue.commit)

    def _hand_out(
        self,
        state: EndpointState,
        select: Callable[[], Selection[Any, Waiter] | None],
        commit: Callable[[Selection[Any, Waiter]], object],
        queue: str | None = None,
    ) -> None:
        """Admit the waiters `select` offers on `state` while it has room: a cancelled one is only dequeued, and
        one its rate budget cannot take yet stays queued (a timer re-dispatches). `queue` names a pool's queue."""
        now = self._clock.now()
        while self._has_room(state, now) and (selection := select()) is not None:
            waiter = selection.item
            if waiter.future.done():  # cancelled; its task has not run its cleanup yet
                commit(selection)
                continue
            if state.budget is not None and not state.budget.ready(waiter.tokens, now):
                self._arm_budget_timer(state, state.budget.wait_s(waiter.tokens, now))
                return
            commit(selection)
            waiter.future.set_result(
                self._admit(
                    state, waiter.alias, waiter.group, waiter.tokens, now, waiter.queued_at, waiter.correlation, queue
                )
            )

    @staticmethod
    def _fail_waiters(waiters: list[Waiter], error: BaseException) -> None:
        """Fail waiters taken out of a queue (`clear()`), an endpoint's own or a pool's."""
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)

    # ------------------------------------------------------------ internals: timers (no polling)

    def _arm_budget_timer(self, state: EndpointState, delay: float) -> None:
        due = self._clock.now() + delay
        state.budget_timer.arm(lambda: due, lambda: self._dispatch(state))

    # ------------------------------------------------------------ internals: plumbing

    def _timeout(self, state: EndpointState, alias: str | None, why: str = "") -> AdmissionTimeout:
        in_flight, cooling = self._ledger.in_flight(state.key), state.cooldown.active(self._clock.now())
        return saturated(state, alias, in_flight=in_flight, cooling=cooling, why=why)

    def _emit(self, event_type: type[Event], **fields: Any) -> None:
        if self._sink is not None:
            self._sink.emit(event_type(ts=self._clock.now(), **fields))
