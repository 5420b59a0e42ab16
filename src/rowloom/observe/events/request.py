"""Request-admission events: queued, admitted, rate-limited, completed, retried, limit and cooldown changes, outages.

Values only (str/int/float/None), emitted by `rowloom.models.admission` and the request executor; no logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rowloom.observe.events.base import Event, register_event

POOL_QUEUE_PREFIX = "pool:"
"""The `key` of a pooled alias's queue in request events is this prefix and the alias (`pool:writer`)."""


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RequestQueued(Event):
    """A request attempt could not be admitted at once and waits in the endpoint's fair queue."""

    kind: ClassVar[str] = "request_queued"
    key: str
    alias: str | None
    group: str
    waiters: int
    in_flight: int
    limit: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RequestAdmitted(Event):
    """A request attempt got a lease; `wait_s` is how long it queued."""

    kind: ClassVar[str] = "request_admitted"
    key: str
    alias: str | None
    group: str
    lease: int
    wait_s: float
    in_flight: int
    limit: int
    queue: str | None = None  # the key of the queue it waited in when not its endpoint's own (a pool's)


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RequestRateLimited(Event):
    """An attempt was answered 429; `consecutive` counts 429s since the endpoint's last success."""

    kind: ClassVar[str] = "request_rate_limited"
    key: str
    alias: str | None
    retry_after_s: float | None
    consecutive: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RequestCompleted(Event):
    """An attempt's lease was released with its outcome (success, rate_limited, timeout, …)."""

    kind: ClassVar[str] = "request_completed"
    key: str
    alias: str | None
    group: str
    lease: int
    outcome: str
    latency_s: float
    tokens: int | None
    completion_tokens: int | None = None  # of a success, when the provider reported usage
    # How an overload (429, 503/529, timeout) was read: "counted" (the limit learnt it), "straggler" (a timeout
    # later requests overtook) or "background" (of the kind the endpoint sends at any load); None otherwise.
    overload: str | None = None
    # The reply's usage, for the token ledger (`rowloom.models.ledger`): None on a failed attempt (no reply, no
    # tokens); `usage_known` False for a reply without a `usage` block (its counts are unknown, not zero).
    usage_known: bool | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RequestRetried(Event):
    """The executor will re-admit a failed attempt after `delay_s`."""

    kind: ClassVar[str] = "request_retried"
    key: str
    alias: str
    outcome: str
    attempt_number: int  # 1 for the first attempt of this request
    delay_s: float
    counted: bool  # False for 429s, which do not spend the retry budget


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class LimitChanged(Event):
    """An endpoint's concurrency limit moved."""

    kind: ClassVar[str] = "limit_changed"
    key: str
    old: int
    new: int
    reason: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CooldownStarted(Event):
    """An endpoint pauses: nothing is admitted before `until` (clock seconds)."""

    kind: ClassVar[str] = "cooldown_started"
    key: str
    until: float
    duration_s: float
    reason: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CooldownEnded(Event):
    """An endpoint's pause is over; waiters are admitted again."""

    kind: ClassVar[str] = "cooldown_ended"
    key: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class ReleaseRejected(Event):
    """A release changed nothing: the lease was a duplicate, unknown or stale (older generation)."""

    kind: ClassVar[str] = "release_rejected"
    key: str
    lease: int
    status: str


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointDown(Event):
    """An endpoint is judged down after `failures` failures in a row: its requests wait, one probe at a time goes
    out. `url` carries no credentials; `last_error` is how the last attempt failed."""

    kind: ClassVar[str] = "endpoint_down"
    key: str
    provider: str
    url: str
    last_error: str
    failures: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointUp(Event):
    """A down endpoint answered again after `down_for_s`; `probes` went out meanwhile (the answering one included)."""

    kind: ClassVar[str] = "endpoint_up"
    key: str
    down_for_s: float
    probes: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CacheHit(Event):
    """A chat request answered by the reply cache (`source` "store"), or by an identical request in flight at the
    same time ("flight"): no request was sent. The usage is the reply's when it was fetched (what was saved)."""

    kind: ClassVar[str] = "cache_hit"
    key: str
    alias: str
    group: str
    source: str
    usage_known: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CacheMissed(Event):
    """A chat request the reply cache could not answer: it goes on to the provider (the attempts that follow are
    `request_*` events)."""

    kind: ClassVar[str] = "cache_miss"
    key: str
    alias: str
    group: str
