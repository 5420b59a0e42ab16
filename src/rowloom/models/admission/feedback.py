"""What a finished request attempt teaches its endpoint: its health, a limit sample, pause evidence, a budget
correction.

Owns the translation of one outcome into those updates (and their events); must not touch leases, the waiter
queue or timers — the controller settles the lease first and arms a timer for any pause returned, and for the
probes of an endpoint that is down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from rowloom.models.admission.cooldown import Pause
from rowloom.models.admission.endpoint import EndpointState
from rowloom.models.admission.health import Transition
from rowloom.models.admission.leases import RequestLease
from rowloom.models.admission.rate_budget import RateBudget
from rowloom.models.types import Outcome, RateLimitInfo
from rowloom.observe.events.request import (
    CooldownStarted,
    EndpointDown,
    EndpointUp,
    LimitChanged,
    RequestRateLimited,
)

Emit = Callable[..., None]
"""`emit(EventType, **fields)`: the controller's cheap, sink-aware event emitter."""


class Lesson(NamedTuple):
    """What `learn` made of an attempt: a pause that started or grew, and how an overload was read."""

    pause: Pause | None
    overload: str | None  # "counted", "straggler", "background"; None for an attempt that is no overload


def learn(
    state: EndpointState,
    lease: RequestLease,
    outcome: Outcome,
    *,
    now: float,
    rtt_s: float,
    in_flight: int,
    load: float | None = None,
    retry_after_s: float | None,
    rate_limit: RateLimitInfo,
    tokens_used: int | None,
    completion_tokens: int | None = None,
    burst_s: float,
    emit: Emit,
    error: str | None = None,
) -> Lesson:
    """Update the endpoint from one released attempt; returns a pause that started or grew, if any, and how an
    overload was read.

    `in_flight` counts the key's live leases before this one was settled (itself included), `load` the mean of
    that count while the attempt ran; `error` says how a failed attempt failed (kept as the endpoint's last
    error).
    """
    budget_spent = rate_limit.exhausted_until_s is not None
    overload = _read_overload(state, lease, outcome, budget_spent)
    change = state.health.on_release(
        outcome,
        now=now,
        admitted_at=lease.acquired_at,
        limit=state.limit.limit,
        error=error,
        background=overload == "background" and outcome is Outcome.OVERLOADED,
    )
    if change is not None:  # before the sample: a success that ends an outage grows from the restarted limit
        _outage(state, change, emit)
    if state.budget is not None:
        state.budget.settle(lease.tokens, tokens_used, rejected=outcome is Outcome.RATE_LIMITED)
    if budget_spent:
        rate_limit = _pace_from_headers(state, rate_limit, now, burst_s)
    answered = lease.epoch < state.limit.epoch  # admitted before the last cut: that burst was answered
    pause: Pause | None = None
    if outcome is Outcome.SUCCESS:
        pause = state.cooldown.on_success(now, rate_limit)
        # A smoothed round trip: a pool's tie-break between endpoints of equal headroom.
        state.latency_s = rtt_s if state.latency_s == 0.0 else 0.8 * state.latency_s + 0.2 * rtt_s
        _sample(state, lease, rtt_s, in_flight, load, dropped=False, emit=emit, tokens=completion_tokens)
    elif outcome is Outcome.RATE_LIMITED:
        state.rate_limited += 1
        pause = state.cooldown.on_rate_limited(
            now, retry_after_s=retry_after_s, rate_limit=rate_limit, counts=not answered
        )
        emit(
            RequestRateLimited,
            key=state.label,
            alias=lease.alias,
            retry_after_s=retry_after_s,
            consecutive=state.cooldown.consecutive_429,
        )
    if overload == "counted":
        _sample(state, lease, rtt_s, in_flight, load, dropped=True, emit=emit, cause=outcome)
    if pause is not None and pause.started:
        emit(CooldownStarted, key=state.label, until=pause.until, duration_s=pause.until - now, reason=pause.reason)
    return Lesson(pause, overload)


def _read_overload(state: EndpointState, lease: RequestLease, outcome: Outcome, budget_spent: bool) -> str | None:
    """How an overload reads: "counted" (evidence of too much concurrency: the limit learns it), "straggler" (a
    timeout something overtook) or "background" (a 503/529 or timeout of the kind that comes at any load,
    `OverloadRuns`). None for an attempt that is no overload (a success is recorded here). A 429 is about our
    own traffic and always counts. Server, connection and client errors, a 429 with a spent budget,
    cancellations and bugs carry no capacity signal."""
    if outcome is Outcome.SUCCESS:
        state.newest_success_admitted_at = max(state.newest_success_admitted_at, lease.acquired_at)
        state.overload_runs.on_success()
        return None
    if outcome is Outcome.RATE_LIMITED:  # about our own traffic, never the background: evidence, unless of a budget
        return None if budget_spent else "counted"
    if not outcome.is_overload:
        return None
    if outcome is Outcome.TIMEOUT and overtaken(state, lease):
        state.stragglers += 1  # that request's own fault (hung, or longer than the timeout): not the server's load
        return "straggler"
    return "counted" if state.overload_runs.counts(outcome) else "background"


def overtaken(state: EndpointState, lease: RequestLease) -> bool:
    """Whether a request admitted after `lease` was served successfully before `lease`'s attempt ended.

    A server that is overloaded queues: a request stuck behind the queue until its timeout has every request
    admitted after it stuck behind it too, so none of them can have been answered first. When one was, the
    server was serving promptly while this request hung (a stuck connection, a lost request, a reply longer than
    the timeout): its timeout says nothing about load, and cutting the limit for it would starve a healthy
    endpoint — at 5% hung requests, down to one request in flight. A server that stops answering altogether
    overtakes nothing; health takes it down after the timeouts in a row.
    """
    return state.newest_success_admitted_at > lease.acquired_at


def _outage(state: EndpointState, change: Transition, emit: Emit) -> None:
    health = state.health
    if not change.up:
        emit(
            EndpointDown,
            key=state.label,
            provider=health.provider,
            url=health.url,
            last_error=health.last_error,
            failures=change.failures,
        )
        return
    before = state.limit.limit
    state.limit.restart(change.resume_limit(state.limit.min_limit, before))
    emit(EndpointUp, key=state.label, down_for_s=change.down_for_s, probes=change.probes)
    _limit_moved(state, before, emit)


def _pace_from_headers(state: EndpointState, info: RateLimitInfo, now: float, burst_s: float) -> RateLimitInfo:
    """Learn the refill rate of each spent budget whose size is known, and pace admissions at it.

    OpenAI-style reset headers give the time until the budget is *full* again, so a spent budget of `limit`
    refills at `limit / reset` per second: pacing at that rate uses the budget as it refills instead of
    pausing until it is full. Returns `info` without the budgets now paced; the rest still pause the key.
    """
    for kind, remaining, limit, reset in (
        ("requests", info.remaining_requests, info.limit_requests, info.reset_requests_s),
        ("tokens", info.remaining_tokens, info.limit_tokens, info.reset_tokens_s),
    ):
        if remaining == 0 and limit and reset:
            if state.budget is None:
                state.budget = RateBudget(rpm=None, tpm=None, burst_s=burst_s, now=now)
            state.budget.learn(kind, limit / reset * 60.0, now)
            info = dataclasses.replace(info, **{f"remaining_{kind}": None})
    return info


def _sample(
    state: EndpointState,
    lease: RequestLease,
    rtt_s: float,
    in_flight: int,
    load: float | None,
    *,
    dropped: bool,
    emit: Emit,
    cause: Outcome | None = None,
    tokens: int | None = None,
) -> None:
    before = state.limit.limit
    state.limit.on_sample(
        lease.acquired_at,
        rtt_s,
        in_flight,
        dropped,
        epoch=lease.epoch,
        in_flight_at_start=lease.in_flight_at_start,
        cause=cause,
        tokens=tokens,
        load=load,
    )
    _limit_moved(state, before, emit)


def _limit_moved(state: EndpointState, before: int, emit: Emit) -> None:
    after = state.limit.limit
    if after != before:
        state.observed_max_limit = max(state.observed_max_limit, after)
        emit(LimitChanged, key=state.label, old=before, new=after, reason=state.limit.reason)
