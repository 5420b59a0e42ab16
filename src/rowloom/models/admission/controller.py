"""`RequestAdmissionController`: when may a model request go out — leases, waiter queues, cooldowns, caps.

Owns admission decisions per resource key; the limit algorithms, fair queue, pause evidence and budgets are
parts it drives. It must not call providers or classify errors (that is the executor's job).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError
from rowloom.models.admission.caps import CapTable
from rowloom.models.admission.cooldown import Cooldown, Pause
from rowloom.models.admission.endpoint import AliasBinding, EndpointState, Waiter
from rowloom.models.admission.keys import ResourceKey
from rowloom.models.admission.leases import LeaseLedger, ReleaseStatus, RequestLease
from rowloom.models.admission.limits import Limit, limit_from_config
from rowloom.models.admission.rate_budget import RateBudget
from rowloom.models.types import Outcome, RateLimitInfo
from rowloom.observe.clock import SYSTEM_CLOCK, Clock
from rowloom.observe.events.base import Event
from rowloom.observe.events.request import (
    CooldownEnded,
    CooldownStarted,
    LimitChanged,
    ReleaseRejected,
    RequestAdmitted,
    RequestCompleted,
    RequestQueued,
    RequestRateLimited,
)
from rowloom.observe.sinks import EventSink, NullSink

LimitFactory = Callable[[ResourceKey, int], Limit]
"""Builds the limit of a key from the key and its ceiling (`max_parallel_requests` or the default)."""

_NO_RATE_LIMIT = RateLimitInfo()


class AdmissionTimeout(RowloomError, TimeoutError):
    """No request slot was free before the acquire's deadline."""


class AdmissionClosed(RowloomError):
    """The controller was reset or closed while a request waited for a slot."""


class RequestAdmissionController:
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
        self._sink = None if sink is None or isinstance(sink, NullSink) else sink
        self._limit_factory = limit_factory or (
            lambda key, ceiling: limit_from_config(self.config, ceiling=ceiling, clock=clock)
        )
        self._ledger = LeaseLedger(memory=self.config.released_lease_memory)
        self._caps = CapTable(self.config.caps)
        self._states: dict[ResourceKey, EndpointState] = {}
        self._aliases: dict[tuple[str, str], ResourceKey] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # ------------------------------------------------------------ registration

    def register_model(
        self, alias: str, model: ModelConfig, provider: ProviderConfig, *, domain: str = "chat"
    ) -> ResourceKey:
        """Make `alias` admissible; aliases of the same provider, model and domain share one state."""
        if model.provider != provider.name:
            raise RowloomError(
                f"model alias {alias!r} names provider {model.provider!r} but was registered with {provider.name!r}"
            )
        key = ResourceKey(provider.name, model.model, domain)
        known = self._aliases.get((alias, domain))
        if known is not None and known != key:
            raise RowloomError(f"model alias {alias!r} is already registered for {known.label} ({domain})")
        self._aliases[(alias, domain)] = key
        ceiling = model.max_parallel_requests or self.config.default_max_parallel_requests
        state = self._states.get(key)
        if state is None:
            cooldown = Cooldown(
                threshold=self.config.consecutive_429_pause,
                default_s=self.config.default_cooldown_s,
                max_s=self.config.max_retry_after_s,
            )
            state = self._states[key] = EndpointState(key, self._limit_factory(key, ceiling), cooldown, ceiling)
        elif ceiling > state.ceiling and state.issued == 0:
            state.ceiling = ceiling  # before any traffic the shared limit may still take the larger ceiling
            state.limit = self._limit_factory(key, ceiling)
            state.observed_max_limit = state.limit.limit
        state.aliases[alias] = AliasBinding(model.max_parallel_requests, model.rpm, model.tpm)
        rpm, tpm = state.budgets()
        current = state.budget
        if (rpm, tpm) != (_per_minute(current, "requests"), _per_minute(current, "tokens")):
            state.budget = (
                RateBudget(rpm=rpm, tpm=tpm, burst_s=self.config.rate_burst_s, now=self._clock.now())
                if rpm or tpm
                else None
            )
        state.caps = self._caps.attach(key)
        for member in {k for cap in state.caps for k in cap.members}:
            self._states[member].peers = [self._states[k] for k in self._caps.peers(member)]
        return key

    def key_for(self, alias: str, *, domain: str = "chat") -> ResourceKey:
        """The resource key an alias is registered on."""
        return self._resolve(alias, domain)[0].key

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
    ) -> RequestLease:
        """Wait for a request slot and return its lease.

        Waiters queue fairly by `group` (share proportional to `weight`). `tokens` is reserved against a tpm
        budget. `deadline` is an absolute time on the controller's clock; past it, `AdmissionTimeout`. If the
        caller is cancelled after a lease was assigned but before it resumed, the lease is released.
        """
        state, alias = self._resolve(alias_or_key, domain)
        loop = self._bind_loop()
        if state.failed is not None:
            raise state.failed
        now = self._clock.now()
        if not state.queue and self._can_admit(state, alias, tokens, now):
            return self._admit(state, alias, group, tokens, now, now)
        if deadline is not None and deadline <= now:
            raise self._timeout(state, alias)
        waiter = Waiter(alias, group, tokens, loop.create_future(), now)
        state.queue.push((alias, group), waiter, weight=weight)
        self._emit(
            RequestQueued,
            key=state.label,
            alias=alias,
            group=group,
            waiters=len(state.queue),
            in_flight=self._ledger.in_flight(state.key),
            limit=state.limit.limit,
        )
        self._dispatch(state)
        if waiter.future.done():
            return waiter.future.result()
        timer = None if deadline is None else loop.create_task(self._expire_at(state, waiter, deadline))
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(state, waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def try_acquire(
        self, alias_or_key: str | ResourceKey, *, domain: str = "chat", group: str = "default", tokens: int = 0
    ) -> RequestLease | None:
        """A lease if one is free right now and nobody is queued ahead; else None (never waits)."""
        if self._foreign_thread():
            return self._on_loop(self.try_acquire, alias_or_key, domain=domain, group=group, tokens=tokens)
        state, alias = self._resolve(alias_or_key, domain)
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
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RowloomError(
                "acquire_blocking() was called on a thread that runs an event loop; blocking there would freeze "
                "every request on it. Use `await controller.acquire(...)` instead."
            )
        loop = self._loop
        if loop is not None and loop.is_running():
            deadline = None if timeout_s is None else self._clock.now() + timeout_s
            # The lease is handed over under a lock, so that exactly one side gives it back if this thread
            # is interrupted (Ctrl-C) at the moment the lease arrives.
            handoff = threading.Lock()
            held: list[RequestLease] = []
            abandoned = False

            async def wait_on_loop() -> RequestLease:
                lease = await self.acquire(
                    alias_or_key, domain=domain, group=group, weight=weight, tokens=tokens, deadline=deadline
                )
                with handoff:
                    if not abandoned:
                        held.append(lease)
                        return lease
                self.release(lease, Outcome.CANCELLED, rtt_s=0.0)
                return lease

            pending = asyncio.run_coroutine_threadsafe(wait_on_loop(), loop)
            try:
                return pending.result()
            except BaseException:
                with handoff:
                    abandoned = True
                pending.cancel()
                if held:
                    self.release(held[0], Outcome.CANCELLED, rtt_s=0.0)
                raise
        lease = self.try_acquire(alias_or_key, domain=domain, group=group, tokens=tokens)
        if lease is None:
            state, alias = self._resolve(alias_or_key, domain)
            raise self._timeout(state, alias, "and no event loop serves this controller to free one")
        return lease

    # ------------------------------------------------------------ release

    def release(
        self,
        lease: RequestLease,
        outcome: Outcome | str,
        *,
        rtt_s: float,
        retry_after_s: float | None = None,
        rate_limit: RateLimitInfo | None = None,
        tokens_used: int | None = None,
    ) -> ReleaseStatus:
        """Return a lease with how its attempt ended; the limit, cooldown and budget learn from it.

        Only the first release of a live lease of this generation changes anything; every other call is
        reported (DUPLICATE, UNKNOWN, STALE) and emits `ReleaseRejected`.
        """
        if self._foreign_thread():
            return self._on_loop(
                self.release,
                lease,
                outcome,
                rtt_s=rtt_s,
                retry_after_s=retry_after_s,
                rate_limit=rate_limit,
                tokens_used=tokens_used,
            )
        in_flight = self._ledger.in_flight(lease.key)
        status = self._ledger.settle(lease)
        if status is not ReleaseStatus.RELEASED:
            self._emit(ReleaseRejected, key=lease.key.label, lease=lease.id, status=status.value)
            return status
        state = self._states[lease.key]
        outcome = Outcome(outcome)
        now = self._clock.now()
        self._learn(
            state, lease, outcome, now, rtt_s, in_flight, retry_after_s, rate_limit or _NO_RATE_LIMIT, tokens_used
        )
        self._emit(
            RequestCompleted,
            key=state.label,
            alias=lease.alias,
            group=lease.group,
            lease=lease.id,
            outcome=outcome.value,
            latency_s=rtt_s,
            tokens=tokens_used,
        )
        self._dispatch(state)
        if state.peers:
            for peer in state.peers:
                self._dispatch(peer)
            state.peers.append(state.peers.pop(0))  # rotate, so a shared cap's freed slot is shared too
        return status

    # ------------------------------------------------------------ views for the engine and observability

    def capacity(self, alias: str, *, domain: str = "chat") -> int:
        """Requests the alias may have in flight now (its key's current limit, within its own ceiling)."""
        state, name = self._resolve(alias, domain)
        ceiling = state.alias_ceiling(name)
        return state.limit.limit if ceiling is None else min(ceiling, state.limit.limit)

    def pressure(self, alias: str, *, domain: str = "chat") -> bool:
        """Whether the alias's endpoint is saturated: waiters are queued or it is cooling down."""
        state, _ = self._resolve(alias, domain)
        return bool(state.queue) or state.cooldown.active(self._clock.now())

    def in_flight(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> int:
        """Live leases on the key behind `alias_or_key` (all its aliases together)."""
        return self._ledger.in_flight(self._resolve(alias_or_key, domain)[0].key)

    def waiting(self, alias_or_key: str | ResourceKey, *, domain: str = "chat") -> int:
        """Acquires queued on the key behind `alias_or_key`."""
        return len(self._resolve(alias_or_key, domain)[0].queue)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per key label: limit, bounds, in flight, peak, waiters, cooldown, observed max limit, 429 count."""
        now = self._clock.now()
        return {s.label: s.snapshot(self._ledger.in_flight(s.key), now) for s in self._states.values()}

    @property
    def generation(self) -> int:
        """Stamped on every lease; leases of an older generation release as STALE."""
        return self._ledger.generation

    def recently_released(self) -> list[int]:
        """Ids of recently released leases (bounded), for diagnostics."""
        return self._ledger.recently_released()

    # ------------------------------------------------------------ lifecycle

    def fail_key(self, alias_or_key: str | ResourceKey, error: BaseException, *, domain: str = "chat") -> None:
        """Every current waiter and every later acquire on this key raises `error` (the circuit opened)."""
        state, _ = self._resolve(alias_or_key, domain)
        state.failed = error
        self._fail_waiters(state, error)

    def reset(self) -> None:
        """Start a new generation: forget live leases (their releases become STALE), fail waiters, reopen
        failed keys. Learned limits and cooldowns are kept — they describe the endpoints, not the run."""
        self._ledger.reset()
        for state in self._states.values():
            state.failed = None
            state.peak_in_flight = 0
            self._fail_waiters(state, AdmissionClosed("request admission was reset while this request waited"))

    def close(self) -> None:
        """Cancel timers and fail every waiter; the controller should not be used afterwards."""
        for state in self._states.values():
            state.cancel_timers()
            self._fail_waiters(state, AdmissionClosed("request admission was closed while this request waited"))

    # ------------------------------------------------------------ internals: admission

    def _can_admit(self, state: EndpointState, alias: str | None, tokens: int, now: float) -> bool:
        return (
            self._has_room(state, now)
            and self._alias_room(state, alias)
            and (state.budget is None or state.budget.ready(tokens, now))
        )

    def _has_room(self, state: EndpointState, now: float) -> bool:
        """Key-wide: not cooling down, below the limit and below every aggregate cap."""
        if state.cooldown.until is not None and self._cooling(state, now):
            return False
        if self._ledger.in_flight(state.key) >= state.limit.limit:
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
        self, state: EndpointState, alias: str | None, group: str, tokens: int, now: float, queued_at: float
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
        )
        return lease

    def _dispatch(self, state: EndpointState) -> None:
        """Hand free slots to waiters in fair order until the key, every alias or the budget is full."""
        queue = state.queue
        if not queue:
            return
        now = self._clock.now()
        while queue and self._has_room(state, now):
            selection = queue.select_next(lambda group: self._alias_room(state, group[0]))
            if selection is None:
                return
            waiter = selection.item
            if waiter.future.done():  # cancelled; its task has not run its cleanup yet
                queue.commit(selection)
                continue
            if state.budget is not None and not state.budget.ready(waiter.tokens, now):
                self._arm_budget_timer(state, state.budget.wait_s(waiter.tokens, now))
                return
            queue.commit(selection)
            waiter.future.set_result(
                self._admit(state, waiter.alias, waiter.group, waiter.tokens, now, waiter.queued_at)
            )

    def _abandon(self, state: EndpointState, waiter: Waiter) -> None:
        """The waiting task was cancelled: give back a lease it was already handed, or leave the queue."""
        future = waiter.future
        if future.done() and not future.cancelled():
            if future.exception() is None:
                self.release(future.result(), Outcome.CANCELLED, rtt_s=0.0)
            return
        if state.queue.remove(waiter):
            self._dispatch(state)  # it may have been the head that held the others back

    async def _expire_at(self, state: EndpointState, waiter: Waiter, deadline: float) -> None:
        await self._clock.sleep(deadline - self._clock.now())
        if waiter.future.done():
            return
        state.queue.remove(waiter)
        waiter.future.set_exception(self._timeout(state, waiter.alias))
        self._dispatch(state)

    def _fail_waiters(self, state: EndpointState, error: BaseException) -> None:
        for waiter in state.queue.clear():
            if not waiter.future.done():
                waiter.future.set_exception(error)

    # ------------------------------------------------------------ internals: learning from releases

    def _learn(
        self,
        state: EndpointState,
        lease: RequestLease,
        outcome: Outcome,
        now: float,
        rtt_s: float,
        in_flight: int,
        retry_after_s: float | None,
        rate_limit: RateLimitInfo,
        tokens_used: int | None,
    ) -> None:
        if state.budget is not None:
            state.budget.settle(lease.tokens, tokens_used, rejected=outcome is Outcome.RATE_LIMITED)
        answered = lease.epoch < state.limit.epoch  # admitted before the last cut: that burst was answered
        pause: Pause | None = None
        if outcome is Outcome.SUCCESS:
            pause = state.cooldown.on_success(now, rate_limit)
            self._sample(state, lease, rtt_s, in_flight, dropped=False)
        elif outcome is Outcome.RATE_LIMITED:
            state.rate_limited += 1
            pause = state.cooldown.on_rate_limited(
                now, retry_after_s=retry_after_s, rate_limit=rate_limit, counts=not answered
            )
            self._emit(
                RequestRateLimited,
                key=state.label,
                alias=lease.alias,
                retry_after_s=retry_after_s,
                consecutive=state.cooldown.consecutive_429,
            )
            if rate_limit.exhausted_until_s is None:  # a spent budget says nothing about concurrency
                self._sample(state, lease, rtt_s, in_flight, dropped=True)
        elif outcome.is_overload:
            self._sample(state, lease, rtt_s, in_flight, dropped=True)
        # server/client errors, cancellations and bugs carry no capacity signal
        if pause is not None:
            if pause.started:
                self._emit(
                    CooldownStarted,
                    key=state.label,
                    until=pause.until,
                    duration_s=pause.until - now,
                    reason=pause.reason,
                )
            self._arm_cooldown_timer(state)

    def _sample(
        self, state: EndpointState, lease: RequestLease, rtt_s: float, in_flight: int, *, dropped: bool
    ) -> None:
        before = state.limit.limit
        state.limit.on_sample(
            lease.acquired_at, rtt_s, in_flight, dropped, epoch=lease.epoch, in_flight_at_start=lease.in_flight_at_start
        )
        after = state.limit.limit
        if after != before:
            state.observed_max_limit = max(state.observed_max_limit, after)
            self._emit(LimitChanged, key=state.label, old=before, new=after, reason=state.limit.reason)

    # ------------------------------------------------------------ internals: timers (no polling)

    def _arm_cooldown_timer(self, state: EndpointState) -> None:
        loop = _running_loop()
        if loop is None or (state.cooldown_timer is not None and not state.cooldown_timer.done()):
            return  # without a loop no one can be waiting; expiry is then noticed on the next acquire
        state.cooldown_timer = loop.create_task(self._end_cooldown(state))

    async def _end_cooldown(self, state: EndpointState) -> None:
        while state.cooldown.until is not None and (delay := state.cooldown.until - self._clock.now()) > 0:
            await self._clock.sleep(delay)
        state.cooldown_timer = None
        self._cooling(state, self._clock.now())
        self._dispatch(state)

    def _arm_budget_timer(self, state: EndpointState, delay: float) -> None:
        loop = _running_loop()
        if loop is None or (state.budget_timer is not None and not state.budget_timer.done()):
            return
        state.budget_timer = loop.create_task(self._budget_refilled(state, delay))

    async def _budget_refilled(self, state: EndpointState, delay: float) -> None:
        await self._clock.sleep(delay)
        state.budget_timer = None
        self._dispatch(state)

    # ------------------------------------------------------------ internals: plumbing

    def _resolve(self, alias_or_key: str | ResourceKey, domain: str) -> tuple[EndpointState, str | None]:
        if isinstance(alias_or_key, ResourceKey):
            key, alias = alias_or_key, None
        else:
            key, alias = self._aliases.get((alias_or_key, domain)), alias_or_key
        state = self._states.get(key) if key is not None else None
        if state is None:
            raise RowloomError(
                f"{alias_or_key!s} is not registered with request admission for {domain!r}; "
                "call register_model() for it first"
            )
        return state, alias

    def _timeout(self, state: EndpointState, alias: str | None, why: str = "") -> AdmissionTimeout:
        name = f"model alias {alias!r} ({state.label})" if alias else state.label
        cooling = " and is cooling down" if state.cooldown.active(self._clock.now()) else ""
        return AdmissionTimeout(
            f"no request slot for {name} before the deadline {why}".rstrip()
            + f": the endpoint is saturated{cooling} (limit {state.limit.limit}, "
            f"{self._ledger.in_flight(state.key)} in flight, {len(state.queue)} waiting)"
        )

    def _emit(self, event_type: type[Event], **fields: Any) -> None:
        if self._sink is not None:
            self._sink.emit(event_type(ts=self._clock.now(), **fields))

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._loop_thread = loop, threading.get_ident()
        return loop

    def _foreign_thread(self) -> bool:
        loop = self._loop
        return loop is not None and self._loop_thread != threading.get_ident() and loop.is_running()

    def _on_loop(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return fn(*args, **kwargs)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _per_minute(budget: RateBudget | None, which: str) -> int | None:
    bucket = getattr(budget, which, None) if budget is not None else None
    return None if bucket is None else round(bucket.rate * 60)
