"""Values that cross the model layer's boundary: requests, replies, outcomes and classified provider errors.

No knowledge of columns or rows lives here; the engine builds a `ChatRequest`, the client answers.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rowloom.errors import RowloomError


class Outcome(enum.StrEnum):
    """How one request attempt ended; recorded on every lease release."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 503 / 529: the server says it is saturated
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"  # other 5xx (502/504 from gateways too), malformed or truncated body
    CONNECTION_ERROR = "connection_error"  # refused, reset, DNS failure, server gone, TLS handshake failed
    CLIENT_ERROR = "client_error"  # 4xx other than 429: bad request, auth, quota exhausted
    REPLY_TOO_LARGE = "reply_too_large"  # a body past the provider's max_reply_bytes: that request's failure
    CANCELLED = "cancelled"  # task cancelled or KeyboardInterrupt
    NOT_RUN = "not_run"  # a batch ended (expired, cancelled) before it ran this line: nothing was generated
    UNEXPECTED = "unexpected"  # a bug: never a provider failure

    @property
    def is_overload(self) -> bool:
        """Whether this outcome says the endpoint is past its capacity (drives limit decrease)."""
        return self in (Outcome.RATE_LIMITED, Outcome.OVERLOADED, Outcome.TIMEOUT)

    @property
    def is_unavailable(self) -> bool:
        """Whether this outcome says the endpoint served nothing (no connection, no reply, a 5xx): a run of them
        with no success in between marks the endpoint down (`rowloom.models.admission.health`)."""
        return self in _UNAVAILABLE


_UNAVAILABLE = frozenset({Outcome.CONNECTION_ERROR, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.OVERLOADED})


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a reply said about the rate budget (OpenAI-style `x-ratelimit-*` headers); None when absent."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    @property
    def exhausted_until_s(self) -> float | None:
        """Seconds until the budget refills when a remaining count is at zero, else None."""
        waits = []
        if self.remaining_requests == 0:
            waits.append(self.reset_requests_s or 1.0)
        if self.remaining_tokens == 0:
            waits.append(self.reset_tokens_s or 1.0)
        return max(waits) if waits else None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the provider. `known` is False when the reply carried no `usage` block: its counts
    are then zero but mean "not reported", never "free" (the ledger counts such a reply as unknown).

    `cached_tokens` (of the prompt, `prompt_tokens_details.cached_tokens`) and `reasoning_tokens` (of the
    completion, `completion_tokens_details.reasoning_tokens`) are parts of the prompt and completion counts, as
    OpenAI reports them; zero when the provider does not say.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    known: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Tokens a chat template may add around each message (role markers, separators) and around the whole prompt;
# generous for every template we know of (OpenAI's adds 3-4 per message, Llama 3's 5, ChatML's 4).
MESSAGE_OVERHEAD_TOKENS = 8
PROMPT_OVERHEAD_TOKENS = 16


def prompt_token_bound(texts: Iterable[str], messages: int = 1) -> int:
    """An upper bound on the prompt tokens of `texts`: byte-level tokenizers (BPE, SentencePiece with byte
    fallback) never make more tokens than UTF-8 bytes; plus the chat template's overhead per message."""
    size = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    return size + MESSAGE_OVERHEAD_TOKENS * messages + PROMPT_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat-completions call: messages plus inference parameters and an optional JSON Schema."""

    model: str
    messages: tuple[dict[str, str], ...]
    params: dict[str, Any] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None
    schema_name: str = "output"

    def estimated_tokens(self) -> int:
        """A cheap upper estimate of the tokens this request uses (prompt chars / 4 + max_tokens)."""
        chars = sum(len(m.get("content", "")) for m in self.messages)
        return chars // 4 + int(self.params.get("max_tokens") or 256)

    def token_bounds(self) -> tuple[int, int]:
        """Upper bounds on this request's (prompt, completion) tokens: the prompt's `prompt_token_bound` (its
        messages and any JSON Schema, which providers put in the prompt) and `max_tokens` (0 when unset: the
        reply's length has no bound then)."""
        texts = [str(m.get("content", "")) for m in self.messages]
        if self.json_schema is not None:
            texts.append(json.dumps(self.json_schema, separators=(",", ":")))
        cap = self.params.get("max_completion_tokens") or self.params.get("max_tokens") or 0
        return prompt_token_bound(texts, len(self.messages)), int(cap) if isinstance(cap, int) else 0


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A successful reply: the text, token usage, latency and the rate-limit state the reply reported."""

    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)
    finish_reason: str | None = None
    endpoint: str | None = None  # the endpoint (provider/model) that served it; None for a reply cache hit

    def served_by(self, endpoint: str) -> ChatResponse:
        """This reply with the endpoint that served it (every reply gets one: a constructor call, not the
        generic `dataclasses.replace`)."""
        return ChatResponse(self.text, self.usage, self.latency_s, self.rate_limit, self.finish_reason, endpoint)


class ProviderError(RowloomError):
    """A request attempt failed at or because of the provider; `outcome` says how, `retryable` what to do."""

    outcome: Outcome = Outcome.SERVER_ERROR
    retryable: bool = True
    #: No request to this endpoint can get past this error until the user acts (a refused key): it is the
    #: endpoint's failure, not the row's, and the first one stops every request to the endpoint.
    endpoint_wide: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        rate_limit: RateLimitInfo | None = None,
        latency_s: float = 0.0,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.rate_limit = rate_limit or RateLimitInfo()
        self.latency_s = latency_s


class RateLimited(ProviderError):
    """HTTP 429: retry after `retry_after_s`; never drops a row by itself."""

    outcome = Outcome.RATE_LIMITED


class Overloaded(ProviderError):
    """HTTP 503/529: the server is saturated; retry with backoff and lower the limit."""

    outcome = Outcome.OVERLOADED


class RequestTimeout(ProviderError):
    """No complete reply within the per-request timeout."""

    outcome = Outcome.TIMEOUT


class ServerError(ProviderError):
    """5xx (502/504 from a gateway too) or a malformed/truncated body: retried with backoff."""

    outcome = Outcome.SERVER_ERROR


class ConnectionFailed(ProviderError):
    """No exchange with the server: connection refused or reset, DNS failure, server disconnected, TLS handshake
    failed. Retried; says nothing about capacity (the limit does not learn from it)."""

    outcome = Outcome.CONNECTION_ERROR


class ReplyTooLarge(ProviderError):
    """A reply body (counted after decompression) past the provider's `max_reply_bytes`: reading stopped there, so
    a gzip bomb costs no more memory than the cap. That request's failure: retried, then its row is dropped; the
    endpoint did answer, so it is no sign the endpoint is down."""

    outcome = Outcome.REPLY_TOO_LARGE


class ClientRequestError(ProviderError):
    """4xx other than 429 (bad request, auth, quota exhausted): not retried; the provider's message is kept."""

    outcome = Outcome.CLIENT_ERROR
    retryable = False


class KeyRejected(ClientRequestError):
    """HTTP 401/403, or a 429 `insufficient_quota`: the provider refuses the key (missing, wrong, without access or
    out of quota). No row can get past it, so the first one stops the endpoint (`endpoint_wide`).

    `reason` is the status in words (`401 Unauthorized`); `advice` says what to change. Classification fills in
    what the reply alone tells (quota); the client, which knows where its key came from, fills in the rest.
    """

    endpoint_wide = True

    def __init__(self, message: str, *, reason: str, advice: str = "", **fields: Any):
        super().__init__(message, **fields)
        self.reason = reason
        self.advice = advice


class InvalidReply(ProviderError):
    """A well-formed reply whose content fails validation (e.g. the structured schema); re-asked, then dropped."""

    outcome = Outcome.SUCCESS  # the endpoint did its job; the content is what failed


class ChatClient(Protocol):
    """An adapter for one API style: send a request, return the reply or raise a classified `ProviderError`."""

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """Vectors for a batch of inputs, in input order."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)
