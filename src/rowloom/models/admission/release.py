"""`ReleasePath`: the controller's release of a request lease — the feedback path of request admission.

Owns what follows an attempt: settling its lease exactly once, letting the endpoint learn from the outcome
(`feedback.learn`: health, limit, pause evidence, budget), arming the timers that outcome calls for (the end of a
cooldown, the next probe and the breaker of an endpoint that is down) and handing the freed slot on. Must not
decide admission itself: it re-dispatches through the controller's `_dispatch`.
"""

from __future__ import annotations

from rowloom.concurrency.leases import ReleaseStatus
from rowloom.models.admission.endpoint import EndpointState
from rowloom.models.admission.feedback import learn
from rowloom.models.admission.leases import RequestLease
from rowloom.models.ledger import usage_fields
from rowloom.models.types import Outcome, RateLimitInfo, Usage
from rowloom.observe.events.request import ReleaseRejected, RequestCompleted

_NO_RATE_LIMIT = RateLimitInfo()


class ReleasePath:
    """Mixed into `RequestAdmissionController`: its `release` and the timers a release arms (see the module
    docstring). It uses the controller's ledger, registry, binding, `_emit`, `_dispatch`, `_cooling`, `_spared` and
    `fail_key`."""

    def release(
        self,
        lease: RequestLease,
        outcome: Outcome | str,
        *,
        rtt_s: float,
        retry_after_s: float | None = None,
        rate_limit: RateLimitInfo | None = None,
        tokens_used: int | None = None,
        completion_tokens: int | None = None,
        error: str | None = None,
        usage: Usage | None = None,
    ) -> ReleaseStatus:
        """Return a lease with how its attempt ended; the health, limit, cooldown and budget learn from it.

        `tokens_used` (prompt + completion) settles a tpm budget; `completion_tokens` tells a latency signal how
        long the reply was, so a long reply is not mistaken for queueing. `error` says how a failure failed.
        `usage` (a reply's, as reported) goes on `RequestCompleted` for the token ledger.

        Only the first release of a live lease of this generation changes anything; every other call is
        reported (DUPLICATE, UNKNOWN, STALE) and emits `ReleaseRejected`.
        """
        if self._binding.foreign():
            return self._binding.call(
                self.release,
                lease,
                outcome,
                rtt_s=rtt_s,
                retry_after_s=retry_after_s,
                rate_limit=rate_limit,
                tokens_used=tokens_used,
                completion_tokens=completion_tokens,
                error=error,
                usage=usage,
            )
        in_flight = self._ledger.in_flight(lease.key)
        now = self._clock.now()
        load = self._ledger.mean_load(lease, now)
        status = self._ledger.settle(lease, now)
        if status is not ReleaseStatus.RELEASED:
            self._emit(ReleaseRejected, key=lease.key.label, lease=lease.id, status=status.value)
            return status
        state = self._registry.state(lease.key)
        outcome = Outcome(outcome)
        lesson = learn(
            state,
            lease,
            outcome,
            now=now,
            rtt_s=rtt_s,
            in_flight=in_flight,
            load=load,
            retry_after_s=retry_after_s,
            rate_limit=rate_limit or _NO_RATE_LIMIT,
            tokens_used=tokens_used,
            completion_tokens=completion_tokens,
            burst_s=self.config.rate_burst_s,
            emit=self._emit,
            error=error,
        )
        if lesson.pause is not None:
            self._arm_cooldown_timer(state)
        self._watch_health(state, now)
        self._emit(
            RequestCompleted,
            key=state.label,
            alias=lease.alias,
            group=lease.group,
            lease=lease.id,
            outcome=outcome.value,
            latency_s=rtt_s,
            tokens=tokens_used,
            completion_tokens=completion_tokens,
            overload=lesson.overload,
            **usage_fields(usage),
        )
        self._dispatch(state)
        if state.peers:
            for peer in state.peers:
                self._dispatch(peer)
            state.peers.append(state.peers.pop(0))  # rotate, so a shared cap's freed slot is shared too
        return status

    def _arm_cooldown_timer(self, state: EndpointState) -> None:
        state.cooldown_timer.arm(lambda: state.cooldown.until, lambda: self._cooldown_over(state))

    def _cooldown_over(self, state: EndpointState) -> None:
        self._cooling(state, self._clock.now())
        self._dispatch(state)

    def _watch_health(self, state: EndpointState, now: float) -> None:
        """Stop the key if its breaker (or start-up grace) ran out; while down, time the next probe and the breaker."""
        spared = self._spared(state)
        if state.failed is None and not spared and (error := state.health.stop_error(now)) is not None:
            self.fail_key(state.key, error)
        elif state.health.down:
            state.probe_timer.arm(state.health.probe_due, lambda: self._dispatch(state))
            if not spared:
                state.stop_timer.arm(state.health.stop_due, lambda: self._stop_due(state))

    def _stop_due(self, state: EndpointState) -> None:
        waited = state.queue or any(pool.queue for pool in state.pools)
        if waited or self._ledger.in_flight(state.key):  # a down key nobody waits for must not end the run
            self._watch_health(state, self._clock.now())
