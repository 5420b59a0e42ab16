"""`RequestAdmissionConfig`: the tuning knobs of request admission (limits, cooldowns, retries, caps).

Pydantic models only; the algorithms that read these knobs live in `rowloom.models.admission`.

`RunConfig` embeds it as `request_admission` and rejects the old `throttle:` section with one line::

    class RunConfig(ConfigModel):
        request_admission: RequestAdmissionConfig = Field(default_factory=RequestAdmissionConfig)

        @model_validator(mode="before")
        @classmethod
        def _no_throttle(cls, data: Any) -> Any:
            return reject_legacy_throttle(data, path="run.throttle")

`reject_legacy_throttle` raises `ConfigError` (not a `ValueError`), so pydantic lets it through unchanged and
the user sees a single line naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from rowloom.config.base import ConfigModel
from rowloom.errors import ConfigError, ConfigProblem

LimitAlgorithm = Literal["composite", "aimd", "latency", "fixed"]

# Knobs of the latency algorithm before it learnt a model of the server (kept to name the fix, not accepted).
_RETIRED = {
    "gradient_tolerance": "latency_tolerance",
    "gradient_probe_interval_s": "latency_probe_interval_s",
    "gradient_min_window": None,
    "gradient_max_decrease": None,
    "gradient_probe_fraction": None,
}


class AggregateCap(ConfigModel):
    """A bound on the summed in-flight requests of every model (and domain) of one provider, or one model."""

    provider: str = Field(min_length=1, description="Provider name the cap applies to.")
    model: str | None = Field(
        None, description="Model id at that provider; unset = the cap bounds every model of the provider."
    )
    max_in_flight: int = Field(ge=1, description="Most requests in flight at once across everything capped.")

    @property
    def label(self) -> str:
        """`provider` or `provider/model`, for messages and snapshots."""
        return self.provider if self.model is None else f"{self.provider}/{self.model}"


class RequestAdmissionConfig(ConfigModel):
    """How request admission finds and holds each endpoint's capacity. Defaults suit hosted APIs and vLLM."""

    algorithm: LimitAlgorithm = Field(
        "composite",
        description=(
            "Concurrency-limit algorithm per endpoint: `aimd` (loss: 429/503/timeouts), `latency` (a model of how "
            "latency grows with load, for servers that queue instead of sending 429), `composite` (the minimum of "
            "both), `fixed` (always the ceiling)."
        ),
    )
    default_max_parallel_requests: int = Field(
        64, ge=1, description="Ceiling for a model whose `max_parallel_requests` is unset."
    )
    initial_limit: int = Field(
        16, ge=1, description="Concurrency a model starts at (clamped to its ceiling); slow start grows it from here."
    )
    min_limit: int = Field(1, ge=1, description="The limit never goes below this many requests in flight.")
    slow_start: bool = Field(
        True,
        description="Grow fast (see slow_start_step) while every request succeeds, until the first overload signal.",
    )
    slow_start_step: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Slow-start growth per fully-used success: 1.0 doubles the limit each round trip, 0.5 grows it by half "
            "(the overshoot past an unknown capacity, and so the first burst of 429s, is half as large)."
        ),
    )

    aimd_increase_step: float = Field(
        1.0, gt=0, description="Additive increase of the limit after each window of fully-used successes."
    )
    aimd_window: int | None = Field(
        None, ge=1, description="Successes per increase window; unset = the current limit (about one round trip)."
    )
    aimd_decrease_factor: float = Field(
        0.75, gt=0, lt=1, description="Multiplicative decrease on an overload signal when no better estimate exists."
    )
    aimd_probe_zone: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Within this fraction of the limit where overload last began, grow by `aimd_probe_step`.",
    )
    aimd_probe_step: float = Field(
        0.2, gt=0, description="Increase per window near the last overload point, so steady state rarely hits 429."
    )

    latency_tolerance: float = Field(
        1.25,
        gt=1,
        description=(
            "Headroom above the load where latency starts to grow with load (the server's knee): the limit settles "
            "at knee x tolerance (at least knee + 1), so no slot waits for a request and queueing stays short."
        ),
    )
    latency_probe_interval_s: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds between routine probes below the operating load (the limit is briefly lowered to see the "
            "latency there); doubles, up to 8x, while the probes find no knee."
        ),
    )

    rate_limited_retry_s: float = Field(
        1.0, ge=0, description="A 429 without Retry-After delays its own retry by this many seconds."
    )
    retry_after_jitter: float = Field(
        0.1, ge=0, le=1, description="Up to this fraction is added to a Retry-After so retries do not return in step."
    )
    max_retry_after_s: float = Field(
        120.0, gt=0, description="Longest Retry-After (or rate-limit reset) honoured; longer values are cut to this."
    )
    consecutive_429_pause: int = Field(
        3,
        ge=1,
        description="Pause the whole endpoint after this many 429s with no success in between (a budget is spent).",
    )
    default_cooldown_s: float = Field(
        2.0, gt=0, description="How long such a pause lasts when the 429 carried no Retry-After."
    )

    max_attempts: int = Field(
        5, ge=1, description="Attempts per request for 5xx, 503 and timeouts (429s do not count against it)."
    )
    backoff_base_s: float = Field(
        0.5, ge=0, description="First backoff after an overload signal (503, timeout); doubles per failure."
    )
    server_error_backoff_s: float = Field(
        0.1,
        ge=0,
        description="First backoff after another 5xx, a reset connection or a malformed reply; doubles per failure.",
    )
    backoff_max_s: float = Field(30.0, ge=0, description="Longest backoff between attempts.")
    backoff_jitter: float = Field(
        0.5, ge=0, le=1, description="Backoffs are shortened by up to this fraction at random."
    )
    circuit_breaker_s: float = Field(
        300.0,
        gt=0,
        description="Stop the run when an endpoint has had no success for this long while every request failed.",
    )
    down_after_failures: int = Field(
        3,
        ge=1,
        description=(
            "Judge an endpoint down after this many failures in a row (refused or reset connections, timeouts, 5xx, "
            "503) with no success in between: requests then wait, one probe at a time goes out, and failures while "
            "it is down spend no request's max_attempts. Must be below max_attempts."
        ),
    )
    probe_backoff_s: float = Field(
        0.5,
        gt=0,
        description=(
            "Shortest wait between probes of a down endpoint; after that the wait is a tenth of how long it has "
            "been down (so a return is noticed within ~10% of the outage)."
        ),
    )
    probe_backoff_max_s: float = Field(15.0, gt=0, description="Longest wait between probes of a down endpoint.")
    startup_grace_s: float = Field(
        30.0,
        gt=0,
        description=(
            "An endpoint that has never answered and is down stops the run after this long (counted from its first "
            "failure) with a setup error: time for a server still loading its model, not for a wrong port."
        ),
    )

    rate_burst_s: float = Field(
        1.0, gt=0, description="An rpm/tpm budget may be spent this many seconds' worth at once (bucket depth)."
    )
    caps: list[AggregateCap] = Field(
        default_factory=list,
        description="Aggregate in-flight caps per provider or per provider+model, shared by all their aliases.",
    )
    released_lease_memory: int = Field(
        1024, ge=1, description="Released lease ids remembered to tell duplicate from unknown releases."
    )

    @model_validator(mode="before")
    @classmethod
    def _retired_knobs(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if data.get("algorithm") == "gradient":
                raise ConfigError(
                    ConfigProblem(
                        "request_admission.algorithm",
                        "`gradient` was replaced by `latency`, which learns how latency grows with load",
                        "write `algorithm: latency` (or leave the default `composite`)",
                    )
                )
            for old, new in _RETIRED.items():
                if old in data:
                    fix = f"rename it to `{new}`" if new else "remove it: the window and cuts are now set by the data"
                    raise ConfigError(
                        ConfigProblem(f"request_admission.{old}", "this knob of the old gradient limit is gone", fix)
                    )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RequestAdmissionConfig:
        if self.min_limit > self.default_max_parallel_requests:
            raise ValueError("min_limit must not exceed default_max_parallel_requests")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        if self.down_after_failures >= self.max_attempts:
            # Failures before the endpoint is judged down spend the retry budget; were they allowed to use all of
            # it, an outage would drop rows instead of waiting for the endpoint to come back.
            lower = f" or lower down_after_failures to {self.max_attempts - 1}" if self.max_attempts > 1 else ""
            raise ValueError(
                f"down_after_failures ({self.down_after_failures}) must be below max_attempts ({self.max_attempts}), "
                f"so an outage never uses up a request's retries: raise max_attempts to "
                f"{self.down_after_failures + 1}{lower}"
            )
        if self.probe_backoff_s > self.probe_backoff_max_s:
            raise ValueError("probe_backoff_s must not exceed probe_backoff_max_s")
        seen: set[tuple[str, str | None]] = set()
        for cap in self.caps:
            if (cap.provider, cap.model) in seen:
                raise ValueError(f"caps lists {cap.label!r} twice; keep one entry per provider or provider+model")
            seen.add((cap.provider, cap.model))
        return self


def reject_legacy_throttle(data: Any, *, path: str = "throttle") -> Any:
    """A `mode="before"` validator body: refuse a config that still has a `throttle:` section.

    Returns `data` unchanged otherwise. Raises `ConfigError` with one problem naming `path` and the fix.
    """
    if isinstance(data, Mapping) and "throttle" in data:
        raise ConfigError(
            ConfigProblem(
                path,
                "the `throttle` section was replaced by `request_admission`",
                "rename `throttle:` to `request_admission:` and check its fields "
                "(max_parallel_requests/rpm/tpm now live on each model)",
            )
        )
    return data
