"""Endpoint health: is an endpoint up, or down and being probed — judged from outcomes across all its requests.

Owns, per resource key, the failure run that marks the endpoint down, the probe schedule while it is down, the
circuit breaker and the start-up grace, and the errors that stop a run. Pure and clock-free (every call is
given `now`); must not touch leases, queues, limits or timers — the controller consults `admits` in its
admission check, feeds `on_release`, and arms timers at `probe_due` and `stop_due`.

What it must ignore: a failure among successes (a 5% error rate, one bad request) is the row's own, not an
outage. A failure counts towards "down" only when no success at all finished while its attempt was out (it
was admitted at or after the key's last success), so with many requests in flight random errors never
line up into a run (and should they, the next success ends the outage within a round trip). What it must react
to: an endpoint that serves nothing (refused connections, a hung server, 5xx for everything) is down after
`down_after_failures` such failures in a row, and up at the first success. One exception: a server shutting down
gracefully refuses new connections while it still answers the requests it had accepted, so when connections
were refused, only the success of an attempt sent after the failures began (a probe, or one in flight) ends the
outage — the late answers would only flap the endpoint up and down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rowloom.errors import RunAborted
from rowloom.models.types import Outcome

_PROBE_WAIT_SHARE = 0.1  # the wait between probes, as a share of how long the endpoint has been down
_NEUTRAL = frozenset({Outcome.CANCELLED, Outcome.UNEXPECTED})  # say nothing about the endpoint

_HINTS = {
    Outcome.CONNECTION_ERROR: "Is the server running, and is the port in base_url right?",
    Outcome.TIMEOUT: "Is the server overloaded, or the provider's timeout_s too short?",
    Outcome.SERVER_ERROR: "The server answers but fails: check its logs.",
    Outcome.OVERLOADED: "The server says it is overloaded or still loading: raise request_admission.startup_grace_s "
    "if it needs longer to start.",
}


def public_url(url: str | None) -> str:
    """The URL without credentials or query string (either may carry a secret)."""
    if not url:
        return "no base_url"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class EndpointUnavailable(RunAborted):
    """An endpoint rejected or failed every request for longer than `circuit_breaker_s`: the run stops."""

    def __init__(self, *, provider: str, model: str, base_url: str, failing_for_s: float, last_error: str):
        self.provider = provider
        self.model = model
        self.base_url = base_url
        self.failing_for_s = failing_for_s
        self.last_error = last_error
        super().__init__(self._message())

    def _message(self) -> str:
        return (
            f"endpoint {self.provider!r} ({self.base_url}) model {self.model!r} has had no successful request for "
            f"{self.failing_for_s:.0f} s while every request failed; last error: {self.last_error}. "
            "Check that the endpoint is up and the key has quota; rows already written are kept. "
            "Run the same command again to resume"
        )


class EndpointUnreachable(EndpointUnavailable):
    """A setup error: the endpoint never answered a request and stayed down past `startup_grace_s` (or the
    circuit breaker, if shorter). The message says what happened and the likely fix in one line."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        base_url: str,
        failing_for_s: float,
        last_error: str,
        outcome: Outcome | None = None,
    ):
        self.outcome = outcome  # how the last attempt failed: picks the hint
        super().__init__(
            provider=provider, model=model, base_url=base_url, failing_for_s=failing_for_s, last_error=last_error
        )

    def _message(self) -> str:
        hint = _HINTS.get(self.outcome, "Check that the server is up.") if self.outcome else "Check the server."
        return (
            f"cannot reach endpoint {self.provider!r} at {self.base_url} (model {self.model!r}): {self.last_error} "
            f"(no successful request in {self.failing_for_s:.0f} s). {hint}"
        )


class EndpointRejected(EndpointUnavailable):
    """A setup error: the endpoint refused the API key (401/403) or the account's quota (429 insufficient_quota).
    No request can get past that, so the first such reply stops the run instead of dropping row after row; rows
    already written are kept. The message leads with what to change (`advice`)."""

    def __init__(self, *, provider: str, model: str, base_url: str, reason: str, advice: str, last_error: str):
        self.reason = reason
        self.advice = advice
        super().__init__(provider=provider, model=model, base_url=base_url, failing_for_s=0.0, last_error=last_error)

    def _message(self) -> str:
        return (
            f"{self.provider} rejected the API key ({self.reason}): {self.advice}. "
            f"{self.base_url} (model {self.model!r}) said: {self.last_error}"
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """The endpoint went down (`up` False) or came back (`up` True) on the release just fed."""

    up: bool
    failures: int = 0  # down: the failures in a row that marked it
    down_for_s: float = 0.0  # up: how long it was down
    probes: int = 0  # up: probes that went out while it was down (the successful one included)
    limit_before: int | None = None  # up: the limit when the failure run began (before the outage cut it)

    def resume_limit(self, min_limit: int, current: int) -> int:
        """The limit to continue from after an outage: half the limit before it, re-discovered from there."""
        before = self.limit_before if self.limit_before is not None else current
        return max(min_limit, before // 2)


class EndpointHealth:
    """Up, or down and probed one request at a time, ever more rarely; plus the breaker and the grace.

    * Down after `down_after` unavailability failures (connection error, timeout, 5xx, 503/529) in a row with no
      success in between, each from an attempt admitted at or after the last success (see the module docstring).
    * While down, `admits` lets ONE request out (the probe) once `next_probe_at` has passed and nothing is in
      flight; after a failed probe the wait is a tenth of how long the endpoint has been down, from
      `probe_backoff_s` up to `probe_backoff_max_s`: a return is noticed within about a tenth of the outage's
      length (a 20 s restart costs ~2 s more, not a 15 s backoff step), and a long outage is asked rarely.
    * The first success — of a probe, or of a request still in flight — brings it up; after refused connections,
      only of one sent after the failures began.
    * The run must stop (`stop_error`) after `breaker_s` of failures with no success (any failure but a
      cancellation or a bug: 429s and 4xx too), counted from the first failure after the last success; before
      the key's first success ever, a down endpoint gets only `grace_s` (if shorter) and the error is the setup
      error `EndpointUnreachable`.
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        url: str,
        down_after: int = 3,
        probe_backoff_s: float = 0.5,
        probe_backoff_max_s: float = 15.0,
        breaker_s: float = 300.0,
        grace_s: float = 30.0,
    ):
        self.provider, self.model, self.url = provider, model, url
        self.down_after = down_after
        self.probe_backoff_s, self.probe_backoff_max_s = probe_backoff_s, probe_backoff_max_s
        self.breaker_s, self.grace_s = breaker_s, grace_s
        self.down_since: float | None = None
        self.next_probe_at: float | None = None
        self.last_success_at: float | None = None
        self.failing_since: float | None = None  # first failure after the last success (breaker and grace)
        self.last_error = ""
        self.last_outcome: Outcome | None = None
        self.consecutive = 0  # unavailability failures in a row that count towards "down"
        self.probes = 0  # probes finished in the current outage
        self.outages = 0
        self.down_total_s = 0.0  # finished outages
        self._run_limit: int | None = None  # the limit when the current failure run began
        self._run_started: float | None = None  # when it began (its first counted failure)
        self._run_refused = False  # a connection failed in it: answers to requests sent before prove nothing

    @property
    def down(self) -> bool:
        """Whether the endpoint is judged down (requests wait; one probe at a time goes out)."""
        return self.down_since is not None

    def down_s(self, now: float) -> float:
        """Seconds spent down over the run, the current outage included."""
        return self.down_total_s + (0.0 if self.down_since is None else now - self.down_since)

    def admits(self, now: float, in_flight: int) -> bool:
        """Whether a request may go out now: always while up; while down, one probe when it is due."""
        if self.down_since is None:
            return True
        return in_flight == 0 and self.next_probe_at is not None and now >= self.next_probe_at

    def on_release(
        self,
        outcome: Outcome,
        *,
        now: float,
        admitted_at: float,
        limit: int,
        error: str | None = None,
        background: bool = False,
    ) -> Transition | None:
        """Learn from one finished attempt (admitted at `admitted_at`, released at `now`); `limit` is the key's
        limit before this attempt taught it anything; `background` marks a 503/529 of the kind the endpoint sends
        at any load (`OverloadRuns`), which no more says it is down than that it is full. Returns the transition
        it caused, if any."""
        if outcome in _NEUTRAL:
            return None
        probe = self.down_since is not None and admitted_at >= self.down_since
        if outcome is Outcome.SUCCESS:
            sent_before = self._run_started is not None and admitted_at < self._run_started
            if self.down_since is not None and self._run_refused and sent_before:
                return None  # accepted before connections were refused: a graceful shutdown drains those
            self.last_success_at, self.failing_since, self.consecutive = now, None, 0
            run_limit, self._run_limit, self._run_started = self._run_limit, None, None
            if self.down_since is None:
                return None
            down_for, probes = now - self.down_since, self.probes + probe
            self.down_total_s += down_for
            self.down_since = self.next_probe_at = None
            return Transition(up=True, down_for_s=down_for, probes=probes, limit_before=run_limit)
        if self.failing_since is None:
            self.failing_since = now
        self.last_error, self.last_outcome = error or outcome.value, outcome
        if self.down_since is not None:
            if probe:  # the endpoint is still gone: wait longer before asking again
                self.probes += 1
                wait = _PROBE_WAIT_SHARE * (now - self.down_since)
                self.next_probe_at = now + min(self.probe_backoff_max_s, max(self.probe_backoff_s, wait))
            return None
        if (
            background
            or not outcome.is_unavailable
            or (self.last_success_at is not None and admitted_at < self.last_success_at)
        ):
            # A 429 or 4xx is an answer, and so is a 503/529 of the background; a failure that overlapped a success
            # is that request's own.
            return None
        if self.consecutive == 0:
            self._run_limit, self._run_started, self._run_refused = limit, now, False
        self._run_refused |= outcome is Outcome.CONNECTION_ERROR
        self.consecutive += 1
        if self.consecutive < self.down_after:
            return None
        self.down_since, self.probes, self.outages = now, 0, self.outages + 1
        self.next_probe_at = now + self.probe_backoff_s
        return Transition(up=False, failures=self.consecutive)

    # ------------------------------------------------------------ deadlines for the controller's timers

    def probe_due(self) -> float | None:
        """When the next probe may go out (None while up)."""
        return self.next_probe_at if self.down_since is not None else None

    def stop_at(self) -> float | None:
        """When the run must stop if nothing succeeds before (None while nothing fails)."""
        if self.failing_since is None:
            return None
        bound = self.breaker_s
        if self.down_since is not None and self.last_success_at is None:
            bound = min(bound, self.grace_s)
        return self.failing_since + bound

    def stop_due(self) -> float | None:
        """`stop_at` while down, for a timer: a probe may hang until its timeout, so the next failure may be late.
        (While up, failures arrive on their own and each one checks; an idle key must not stop the run.)"""
        return self.stop_at() if self.down_since is not None else None

    def stop_error(self, now: float) -> EndpointUnavailable | None:
        """The error that stops the run if its time has come, else None."""
        due = self.stop_at()
        if due is None or now < due or self.failing_since is None:  # (the last test only narrows the type)
            return None
        fields: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "base_url": self.url,
            "failing_for_s": now - self.failing_since,
            "last_error": self.last_error or "unknown",
        }
        if self.down_since is not None and self.last_success_at is None:
            return EndpointUnreachable(outcome=self.last_outcome, **fields)
        return EndpointUnavailable(**fields)

    def snapshot(self, now: float) -> dict[str, object]:
        """JSON-ready health fields for the endpoint's snapshot."""
        return {
            "down": self.down,
            "down_for_s": 0.0 if self.down_since is None else now - self.down_since,
            "outages": self.outages,
            "down_s": self.down_s(now),
            "last_error": self.last_error or None,
        }
