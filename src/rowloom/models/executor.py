"""`ModelRequestExecutor`: reply cache → acquire a lease → call the provider → classify → release → retry; for a
model with `execution: batch`, reply cache → its batch runner (→ online once, when the model allows it).

Owns the retry policy; admission decisions (endpoint health and its circuit breaker among them) belong to the
controller, HTTP to the clients and keys and storage to the reply cache. A cache hit ends the request before any
lease or budget; every attempt is re-admitted with a new lease, and every path releases what it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError
from rowloom.models.admission import RequestAdmissionController, RequestLease, ResourceKey
from rowloom.models.admission.health import EndpointRejected, EndpointUnavailable, EndpointUnreachable, public_url
from rowloom.models.batch import BatchRunner, line_id
from rowloom.models.budget import Reservation, SpendBudget
from rowloom.models.cache import ReplyCache
from rowloom.models.ledger import usage_fields
from rowloom.models.types import (
    ChatClient,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    KeyRejected,
    Outcome,
    ProviderError,
    Usage,
    prompt_token_bound,
)
from rowloom.observe.context import correlate, current
from rowloom.observe.events.batch import BatchLineCompleted
from rowloom.observe.events.request import CacheHit, CacheMissed, RequestRetried
from rowloom.observe.sinks import EventSink, NullSink

R = TypeVar("R", ChatResponse, EmbeddingResponse)


@dataclass(frozen=True, slots=True)
class RouteMember:
    """One endpoint an alias's requests may go to: the model as that endpoint serves it, and its provider."""

    model: ModelConfig
    provider: ProviderConfig
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class AliasRoute:
    """Where an alias's requests go: its config when it names a pool (else None), and its endpoints in order."""

    pool: ModelConfig | None
    members: tuple[RouteMember, ...]

    @property
    def cache_provider(self) -> str:
        """The provider a cache key scoped by provider names (the first endpoint's)."""
        return self.members[0].provider.name


__all__ = [
    "AliasRoute",
    "EndpointRejected",
    "EndpointUnavailable",
    "EndpointUnreachable",
    "ModelRequestExecutor",
    "RequestFailed",
    "RouteMember",
]

_CANCELLATIONS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
# Attempts the provider turned away before doing the work: not billed. Any other failure (a timeout, a reset
# mid-reply, a truncated body, a reply past the size cap) may have been, so the budget charges its worst case.
_REFUSED = frozenset({Outcome.RATE_LIMITED, Outcome.OVERLOADED, Outcome.CLIENT_ERROR})


def register_alias(admission: RequestAdmissionController, alias: str, route: AliasRoute, domain: str) -> None:
    """Make `alias` admissible for `domain` on its endpoint, or on each endpoint of its pool and then as the pool.
    Idempotent."""
    pool = route.pool
    keys = [
        (admission.register_model(alias, m.model, m.provider, domain=domain, pooled=pool is not None), m.fallback)
        for m in route.members
    ]
    if pool is not None:
        admission.register_pool(alias, keys, spill_after_s=pool.spill_after_s, domain=domain)


class RequestFailed(RowloomError):
    """A request failed for good: a non-retryable 4xx, or the retry budget ran out. The row is dropped.

    `outcome` is how the last attempt ended and `message` the provider's words about it.
    """

    def __init__(self, alias: str, outcome: Outcome, message: str, *, attempts: int, status: int | None = None):
        self.alias = alias
        self.outcome = outcome
        self.message = message
        self.attempts = attempts
        self.status = status
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        code = f" HTTP {status}" if status is not None else ""
        super().__init__(f"request to model {alias!r} failed after {tries} ({outcome.value}{code}): {message}")


class ModelRequestExecutor:
    """Runs chat and embedding requests through request admission with retries.

    * 429: not counted against the retry budget; the request itself sleeps its Retry-After (else
      `rate_limited_retry_s`) plus a little jitter, then is re-admitted.
    * 503/timeouts/5xx/connection errors: bounded exponential backoff with jitter, at most `max_attempts`
      attempts, then `RequestFailed`.
    * Except while the endpoint is down (see `admission.health`): such a failure is the endpoint's, not the
      row's — it spends no attempt and no backoff, and the retry waits in request admission for the probe
      that finds the endpoint back.
    * Non-retryable 4xx: `RequestFailed` at once, with the provider's message.
    * Except an error no row can get past (`endpoint_wide`: a refused key): the endpoint's, not the row's — the
      first one fails the key in request admission (as an ended breaker does) with `EndpointRejected`, so every
      caller of the endpoint stops at once instead of dropping row after row.
    * A bug (any other exception) releases the lease as UNEXPECTED and propagates unchanged; cancellation and
      Ctrl-C release as CANCELLED and propagate.
    * An endpoint whose breaker (or start-up grace) ran out raises `EndpointUnavailable` (or its setup-error
      subclass `EndpointUnreachable`) to every caller of that endpoint.
    """

    def __init__(
        self,
        admission: RequestAdmissionController,
        clients: Mapping[str, ChatClient],
        models: Mapping[str, tuple[ModelConfig, ProviderConfig]],
        config: RequestAdmissionConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sink: EventSink | None = None,
        rng: random.Random | None = None,
        budget: SpendBudget | None = None,
        cache: ReplyCache | None = None,
        endpoints: Mapping[str, AliasRoute] | None = None,
        batches: Mapping[str, BatchRunner] | None = None,
    ):
        """`models` gives single-endpoint aliases as (model, provider); `endpoints` any alias, pooled or not, as
        its `AliasRoute`. `cache` answers chat requests it holds (and stores the others' replies) before any
        admission. `batches` sends the chat requests of the aliases it names through their batch runner instead
        (online only for a line that failed in every batch, when the alias's `batch.retry_online` allows it)."""
        self.admission = admission
        self.budget = budget
        self.cache = cache
        self.config = config or admission.config
        self._clients = clients
        self._endpoints = {alias: AliasRoute(None, (RouteMember(m, p),)) for alias, (m, p) in models.items()}
        self._endpoints.update(endpoints or {})
        self._providers = {m.provider.name: m.provider for route in self._endpoints.values() for m in route.members}
        self._verified: set[str] = set()  # aliases whose every provider has a client
        self._clock = clock
        self._sink = None if sink is None or isinstance(sink, NullSink) else sink
        self._rng = rng or random.Random()
        self._requests = itertools.count(1)
        self._registered: set[tuple[str, str]] = set()
        self._backing_off: Counter[str] = Counter()
        self._labels: dict[str, str] = {}  # chat resource key label per alias, for cache events
        self._batches = dict(batches or {})
        for alias in self._endpoints:
            self._register(alias, "chat")

    async def chat(
        self, alias: str, request: ChatRequest, *, group: str = "default", weight: float = 1.0
    ) -> ChatResponse:
        """The reply to one chat request: from the reply cache when it holds it, else sent (retried as the policy
        says; once for identical requests in flight at the same time)."""
        self._known(alias)

        async def on(lease: RequestLease) -> ChatResponse:
            model = lease.key.model
            reply = await self._client(lease).chat(request if request.model == model else replace(request, model=model))
            return reply.served_by(lease.key.label)

        def online() -> Awaitable[ChatResponse]:
            return self._run(
                alias,
                "chat",
                on,
                tokens=request.estimated_tokens(),
                bounds=request.token_bounds,
                group=group,
                weight=weight,
            )

        runner = self._batches.get(alias)
        send = online if runner is None else lambda: self._batch(runner, request, group, online)

        if self.cache is None:
            return await send()
        key = self.cache.key(request, self._endpoints[alias].cache_provider)
        reply = self.cache.get(key)
        if reply is not None:
            self._emit_hit(alias, group, reply, "store")
            return reply
        if not self.cache.claim(key):  # an identical request is in flight: its reply (rarely, this one's own)
            reply, shared = await self.cache.follow(key, send, lambda: self._emit_miss(alias, group))
            if shared:
                self._emit_hit(alias, group, reply, "flight")
            return reply
        self._emit_miss(alias, group)
        try:
            reply = await send()
        except BaseException as exc:
            self.cache.settle(key, error=exc)
            raise
        self.cache.settle(key, reply)
        return reply

    async def _batch(
        self,
        runner: BatchRunner,
        request: ChatRequest,
        group: str,
        online: Callable[[], Awaitable[ChatResponse]],
    ) -> ChatResponse:
        """The reply to one chat request from `runner`'s batches. Its line's custom_id is the asking task's id and
        a digest of the request, the same in a resumed run, so a resume finds the line a batch already holds; a
        line that failed in every batch goes `online` once when the alias allows it, else fails the request."""
        alias = runner.alias
        custom_id = line_id(current().task, runner.api.body_bytes(request))
        budget = self.budget
        reservation = None if budget is None else await budget.reserve(alias, request.token_bounds, batch=True)
        try:
            result, attempts = await runner.ask(custom_id, request)
        except BaseException:
            # The batch holding the line runs on: the run that reads its result (a resume) charges what it used.
            self._settle(reservation, billed=False)
            raise
        if isinstance(result, ChatResponse):
            self._settle(reservation, usage=result.usage)
            self._emit_line(runner, group, Outcome.SUCCESS.value, result.usage)
            return result.served_by(runner.key)
        self._settle(reservation, billed=False)  # a batch bills only the lines it answered
        self._emit_line(runner, group, result.outcome.value)
        if result.outcome is Outcome.SUCCESS:  # as online: the endpoint did its job, the content failed
            raise result
        if runner.settings.retry_online and result.retryable:
            return await online()
        raise RequestFailed(alias, result.outcome, str(result), attempts=attempts, status=result.status) from result

    async def embed(
        self, alias: str, inputs: Sequence[str], *, group: str = "default", weight: float = 1.0
    ) -> EmbeddingResponse:
        """Embed a batch of inputs (one request; retried as the policy says)."""
        self._known(alias)
        self._register(alias, "embeddings")
        batch = list(inputs)
        tokens = sum(len(text) for text in batch) // 4 + 1
        return await self._run(
            alias,
            "embeddings",
            lambda lease: self._client(lease).embed(lease.key.model, batch),
            tokens=tokens,
            bounds=lambda: (prompt_token_bound(batch, len(batch)), 0),
            group=group,
            weight=weight,
        )

    # ------------------------------------------------------------ the attempt loop

    async def _run(
        self,
        alias: str,
        domain: str,
        call: Callable[[RequestLease], Awaitable[R]],
        *,
        tokens: int,
        bounds: Callable[[], tuple[int, int]],
        group: str,
        weight: float,
    ) -> R:
        request_id = next(self._requests)
        counted = 0  # failures that spend the retry budget (429s do not)
        for attempt in itertools.count(1):
            with correlate(attempt=f"{request_id}.{attempt}"):
                # The attempt's worst case is held from before it queues (BudgetReached when it cannot fit)
                # until it ends: the budget can never be passed by requests already admitted.
                reservation = None if self.budget is None else await self.budget.reserve(alias, bounds)
                try:
                    lease = await self.admission.acquire(
                        alias, domain=domain, group=group, weight=weight, tokens=tokens, retry=attempt > 1
                    )
                except BaseException:
                    self._settle(reservation, billed=False)  # never sent
                    raise
                started, key = self._clock.now(), lease.key  # the endpoint this attempt goes to
                try:
                    result = await call(lease)
                except ProviderError as exc:
                    self._settle(reservation, billed=exc.outcome not in _REFUSED)
                    self.admission.release(
                        lease,
                        exc.outcome,
                        rtt_s=self._clock.now() - started,
                        retry_after_s=exc.retry_after_s,
                        rate_limit=exc.rate_limit,
                        error=str(exc),
                    )
                    error = exc
                except _CANCELLATIONS:
                    self._settle(reservation, billed=True)  # the provider may have served it
                    self.admission.release(lease, Outcome.CANCELLED, rtt_s=self._clock.now() - started)
                    raise
                except BaseException:
                    self._settle(reservation, billed=True)
                    self.admission.release(lease, Outcome.UNEXPECTED, rtt_s=self._clock.now() - started)
                    raise
                else:
                    usage = result.usage
                    self._settle(reservation, usage=usage)
                    self.admission.release(
                        lease,
                        Outcome.SUCCESS,
                        rtt_s=self._clock.now() - started,
                        rate_limit=result.rate_limit,
                        tokens_used=usage.total_tokens or None,
                        completion_tokens=usage.completion_tokens or None,
                        usage=usage,
                    )
                    return result
                if error.outcome is Outcome.SUCCESS:  # e.g. InvalidReply: the endpoint did its job
                    raise error
                if error.endpoint_wide and self.admission.failure(key) is None:
                    self.admission.fail_key(key, self._rejected(key, error))
                if (stopped := self.admission.failure(alias, domain=domain)) is not None:
                    raise stopped  # the endpoint's breaker ran out (a pool's: every endpoint's): the run stops
                if self.admission.failure(key) is not None or (
                    error.outcome.is_unavailable and self.admission.down(key)
                ):
                    # The endpoint's outage, not this row's: no attempt spent and no backoff of its own; the
                    # retry waits in request admission, woken when a probe finds the endpoint back (or, in a
                    # pool, goes to another endpoint).
                    self._emit_retry(key, alias, error.outcome, attempt, 0.0, counted=False)
                    continue
                if error.outcome is not Outcome.RATE_LIMITED:
                    counted += 1
                delay = self._next_delay(alias, error, attempt, counted)
                self._emit_retry(
                    key, alias, error.outcome, attempt, delay, counted=error.outcome is not Outcome.RATE_LIMITED
                )
            self._backing_off[alias] += 1
            try:
                await self._clock.sleep(delay)
            finally:
                self._backing_off[alias] -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _settle(self, reservation: Reservation | None, *, usage: Usage | None = None, billed: bool = True) -> None:
        if reservation is not None and self.budget is not None:
            self.budget.settle(reservation, usage=usage, billed=billed)

    def backing_off(self, alias: str) -> int:
        """Requests of `alias` sleeping before a retry: they hold a task but no request slot."""
        return self._backing_off[alias]

    def _next_delay(self, alias: str, error: ProviderError, attempt: int, counted: int) -> float:
        """Seconds to wait before the next attempt, or raise when there is none."""
        if not error.retryable or error.outcome is Outcome.CLIENT_ERROR:
            raise RequestFailed(alias, error.outcome, str(error), attempts=attempt, status=error.status) from error
        cap = self.config.max_retry_after_s
        if error.outcome is Outcome.RATE_LIMITED:
            base = error.retry_after_s if error.retry_after_s is not None else self.config.rate_limited_retry_s
            base = min(max(base, 0.0), cap)
            return base * (1.0 + self.config.retry_after_jitter * self._rng.random())
        if counted >= self.config.max_attempts:
            raise RequestFailed(alias, error.outcome, str(error), attempts=attempt, status=error.status) from error
        # An overloaded or timing-out endpoint needs room; a plain 5xx / reset / malformed reply is usually
        # transient, and a long first wait only stretches the run's tail.
        first = self.config.backoff_base_s if error.outcome.is_overload else self.config.server_error_backoff_s
        backoff = min(self.config.backoff_max_s, first * 2 ** (counted - 1))
        backoff *= 1.0 - self.config.backoff_jitter * self._rng.random()
        if error.retry_after_s is not None:  # a 503 may say when to come back; never earlier than that
            backoff = max(backoff, min(error.retry_after_s, cap))
        return backoff

    # ------------------------------------------------------------ plumbing

    def _known(self, alias: str) -> None:
        if alias in self._verified:
            return
        route = self._endpoints.get(alias)
        if route is None:
            known = ", ".join(sorted(self._endpoints)) or "(none)"
            raise RowloomError(f"unknown model alias {alias!r}; the executor knows: {known}")
        for member in route.members:
            if member.provider.name not in self._clients:
                raise RowloomError(f"no client for provider {member.provider.name!r} (model alias {alias!r})")
        self._verified.add(alias)

    def _client(self, lease: RequestLease) -> ChatClient:
        return self._clients[lease.key.provider]

    def _rejected(self, key: ResourceKey, error: ProviderError) -> EndpointRejected:
        """The setup error that stops the endpoint when it refuses every request (its key)."""
        provider = self._providers[key.provider]
        reason = error.reason if isinstance(error, KeyRejected) else f"HTTP {error.status}"
        advice = error.advice if isinstance(error, KeyRejected) else "check the provider's settings"
        return EndpointRejected(
            provider=provider.name,
            model=key.model,
            base_url=public_url(provider.base_url),
            reason=reason,
            advice=advice or "check the provider's key settings",
            last_error=str(error).removeprefix(f"HTTP {reason}: "),
        )

    def _register(self, alias: str, domain: str) -> None:
        if (alias, domain) not in self._registered:
            register_alias(self.admission, alias, self._endpoints[alias], domain)
            self._registered.add((alias, domain))

    def _label(self, alias: str) -> str:
        label = self._labels.get(alias)
        if label is None:
            label = self._labels[alias] = self.admission.key_for(alias, domain="chat").label
        return label

    def _emit_hit(self, alias: str, group: str, reply: ChatResponse, source: str) -> None:
        if self._sink is not None:
            usage = reply.usage
            self._sink.emit(
                CacheHit(
                    ts=self._clock.now(),
                    key=self._label(alias),
                    alias=alias,
                    group=group,
                    source=source,
                    usage_known=usage.known,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cached_tokens=usage.cached_tokens,
                )
            )

    def _emit_line(self, runner: BatchRunner, group: str, outcome: str, usage: Usage | None = None) -> None:
        if self._sink is not None:
            self._sink.emit(
                BatchLineCompleted(
                    ts=self._clock.now(),
                    key=runner.key,
                    alias=runner.alias,
                    group=group,
                    outcome=outcome,
                    completion_tokens=None if usage is None or not usage.known else usage.completion_tokens,
                    **usage_fields(usage),
                )
            )

    def _emit_miss(self, alias: str, group: str) -> None:
        if self._sink is not None:
            self._sink.emit(CacheMissed(ts=self._clock.now(), key=self._label(alias), alias=alias, group=group))

    def _emit_retry(
        self, key: ResourceKey, alias: str, outcome: Outcome, attempt: int, delay: float, *, counted: bool
    ) -> None:
        if self._sink is not None:
            self._sink.emit(
                RequestRetried(
                    ts=self._clock.now(),
                    key=key.label,
                    alias=alias,
                    outcome=outcome.value,
                    attempt_number=attempt,
                    delay_s=delay,
                    counted=counted,
                )
            )
