"""The provider simulator's settings: one validated, immutable `SimulatorConfig` and the schedule parser.

Owns only values and their validation; it must not import the server, aiohttp or anything that does I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from rowloom.bench.sim_outages import Window, check_outages, format_outages, parse_outages

SimMode = Literal["hosted", "vllm"]
SimApi = Literal["openai", "anthropic", "azure"]
JitterKind = Literal["uniform", "lognormal"]
OverloadStatus = Literal[503, 529]
ErrorStatus = Literal[400, 500, 502, 504]

# Fault rates are drawn from one uniform number per admitted request, so together they must fit in [0, 1].
_EXCLUSIVE_FAULT_FIELDS = ("error_rate", "overload_rate", "timeout_rate", "malformed_rate", "truncated_rate")


def parse_capacity_schedule(text: str) -> list[tuple[float, int]]:
    """Parse `"0:64,10:16"` into `[(0.0, 64), (10.0, 16)]`: capacity 64 from t=0 s, 16 from t=10 s.

    Times are seconds since the simulator started (or since the last `/stats/reset`), strictly increasing
    and >= 0; capacities are integers >= 0 (0 models an outage). Raises `ValueError` naming the bad entry.
    """
    entries: list[tuple[float, int]] = []
    if not text.strip():
        raise ValueError("capacity_schedule is empty; expected entries like '0:64,10:16' (seconds:capacity)")
    for raw in text.split(","):
        item = raw.strip()
        time_text, sep, cap_text = item.partition(":")
        if not sep:
            raise ValueError(f"capacity_schedule entry {item!r} has no ':'; expected 'seconds:capacity'")
        try:
            at = float(time_text)
        except ValueError:
            raise ValueError(f"capacity_schedule entry {item!r}: time {time_text!r} is not a number") from None
        try:
            cap = int(cap_text)
        except ValueError:
            raise ValueError(f"capacity_schedule entry {item!r}: capacity {cap_text!r} is not an integer") from None
        entries.append((at, cap))
    return _check_schedule(entries)


def _check_schedule(entries: list[tuple[float, int]]) -> list[tuple[float, int]]:
    previous = -1.0
    for at, cap in entries:
        if at < 0 or at != at:
            raise ValueError(f"capacity_schedule time {at} must be a number >= 0")
        if at <= previous:
            raise ValueError(f"capacity_schedule times must strictly increase; {at} follows {previous}")
        if cap < 0:
            raise ValueError(f"capacity_schedule capacity {cap} at t={at} must be >= 0")
        previous = at
    return [(float(at), int(cap)) for at, cap in entries]


class SimulatorConfig(BaseModel):
    """How the simulated provider behaves. Every field has a CLI flag of the same name (`--jitter`, ...).

    Invalid values raise `pydantic.ValidationError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: SimMode = Field("hosted", description="'hosted': 429 beyond capacity; 'vllm': processor sharing.")
    api: SimApi = Field(
        "openai",
        description="Wire format: 'openai' (/v1/chat/completions), 'anthropic' (/v1/messages), 'azure' "
        "(/openai/deployments/{deployment}/chat/completions?api-version=...).",
    )
    latency_s: float = Field(0.05, ge=0, description="Mean no-load service time of one request, seconds.")
    jitter: float = Field(0.0, ge=0, description="Relative spread of the latency (0.2 = about ±20%).")
    jitter_kind: JitterKind = Field("uniform", description="'uniform' ±jitter, or 'lognormal' with sigma=jitter.")
    latency_per_token_s: float = Field(0.0, ge=0, description="Extra service time per completion token.")
    capacity: int = Field(64, ge=1, description="Requests served at once (before any schedule entry).")
    capacity_schedule: tuple[tuple[float, int], ...] = Field(
        (), description="(seconds since start/reset, capacity) steps; a string like '0:64,10:16' is accepted."
    )
    retry_after_s: float = Field(1.0, gt=0, description="Retry-After hint sent with a capacity 429, seconds.")
    send_retry_after: bool = Field(True, description="False omits Retry-After and retry-after-ms everywhere.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute (token bucket, burst = rpm).")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (token bucket, burst = tpm).")
    max_queued: int | None = Field(
        None,
        ge=0,
        description="vllm mode: requests waiting beyond capacity; more in the system are answered 503 at once.",
    )
    outages: tuple[Window, ...] = Field(
        (),
        description="(start, duration) windows in seconds since start/reset when the server is gone (connections "
        "refused); duration inf = for good. Strings: '3+20,40+5', '3+inf', flapping 'up:down:until' ('5:5:60').",
    )
    error_rate: float = Field(0.0, ge=0, le=1, description="Fraction of admitted requests answered `error_status`.")
    error_status: ErrorStatus = Field(
        500,
        description="Status of an injected error: 500 (OpenAI JSON), gateway 502/504 (HTML body), or 400 (a "
        "request the server refuses on its own merits, as for a too-long context or a content filter).",
    )
    overload_rate: float = Field(0.0, ge=0, le=1, description="Fraction answered `overload_status`.")
    overload_status: OverloadStatus = Field(503, description="Status of an injected overload: 503, or 529 (Anthropic).")
    timeout_rate: float = Field(0.0, ge=0, le=1, description="Fraction held open for `hang_s` first.")
    hang_s: float = Field(30.0, ge=0, description="How long a 'timeout' request is held before its reply.")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="Fraction answered 200 with a non-JSON body.")
    truncated_rate: float = Field(0.0, ge=0, le=1, description="Fraction answered 200 with JSON cut short.")
    schema_invalid_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of structured-output replies that violate the requested schema.",
    )
    usage_details: bool = Field(
        False,
        description="Report cached prompt tokens (half the prompt) and reasoning tokens (a third of the completion) "
        "in `prompt_tokens_details` / `completion_tokens_details`, as OpenAI's reasoning and caching models do.",
    )
    omit_usage_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of successful replies sent without a `usage` block."
    )
    api_key: str | None = Field(
        None, description="When set, requests need the key as the API sends it (Bearer, x-api-key or api-key)."
    )
    seed: int = Field(0, description="Seeds latency jitter and fault draws; replies depend only on the prompt.")
    embedding_dim: int = Field(16, ge=1, le=65536, description="Length of every embedding vector.")
    default_max_tokens: int = Field(60, ge=1, description="Reply length cap when a request sets none.")
    reply_words_min: int = Field(30, ge=1, description="Fewest words in a text reply (before the max_tokens cap).")
    reply_words_max: int = Field(60, ge=1, description="Most words in a text reply (before the max_tokens cap).")
    models: tuple[str, ...] = Field(("sim-model",), min_length=1, description="Ids listed by GET /v1/models.")
    batch_delay_s: float = Field(
        5.0, ge=0, description="Batch API: every line of a batch finishes within this long (from half of it on)."
    )
    batch_fail_rate: float = Field(
        0.0, ge=0, le=1, description="Batch API: fraction of lines answered 500 in the batch's error file."
    )
    batch_expire_s: float | None = Field(
        None,
        gt=0,
        description="Batch API: a batch still running this long after creation expires (its unfinished lines "
        "come back as batch_expired); unset: batches never expire.",
    )

    @field_validator("capacity_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_capacity_schedule(value)
        return value

    @field_validator("capacity_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[tuple[float, int], ...]) -> tuple[tuple[float, int], ...]:
        return tuple(_check_schedule(list(value)))

    @field_validator("outages", mode="before")
    @classmethod
    def _parse_outages(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_outages(value)
        return value

    @field_validator("outages")
    @classmethod
    def _check_outages(cls, value: tuple[Window, ...]) -> tuple[Window, ...]:
        return tuple(check_outages(sorted(value)))

    @field_serializer("outages", when_used="json")
    def _outages_as_text(self, value: tuple[Window, ...]) -> str:
        return format_outages(value)  # JSON has no infinity; the text form reads back exactly

    @field_validator("error_status", "overload_status", mode="before")
    @classmethod
    def _status_from_text(cls, value: object) -> object:
        # `--with-sim overload_status=529` arrives as text, and Literal[503, 529] accepts only ints.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @model_validator(mode="after")
    def _faults_fit_in_one_draw(self) -> SimulatorConfig:
        total = sum(getattr(self, name) for name in _EXCLUSIVE_FAULT_FIELDS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"{' + '.join(_EXCLUSIVE_FAULT_FIELDS)} = {total:g} exceeds 1; lower one of these rates")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorConfig:
        if self.reply_words_min > self.reply_words_max:
            raise ValueError(
                f"reply_words_min ({self.reply_words_min}) exceeds reply_words_max ({self.reply_words_max}); "
                "lower the minimum or raise the maximum"
            )
        if self.max_queued is not None and self.mode != "vllm":
            raise ValueError(
                "max_queued applies to mode='vllm' only (hosted mode answers 429 beyond capacity); "
                "set mode='vllm' or drop max_queued"
            )
        return self

    def capacity_at(self, elapsed_s: float) -> int:
        """Capacity in force `elapsed_s` seconds after start/reset (base capacity before the first step)."""
        capacity = self.capacity
        for at, cap in self.capacity_schedule:
            if at > elapsed_s:
                break
            capacity = cap
        return capacity


def require_loopback(host: str) -> str:
    """Return `host` if it is a loopback address (or 'localhost'); the simulator never listens elsewhere."""
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host {host!r} is not a loopback address; the simulator only listens on 127.0.0.1/::1")
    return host
