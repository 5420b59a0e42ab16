"""Adapters that talk to model providers, one per API style; each raises classified `ProviderError`s."""

from rowloom.models.clients.headers import (
    parse_duration_s,
    parse_rate_limit,
    parse_retry_after_s,
    redact_headers,
)
from rowloom.models.clients.openai import (
    InsecureTransportError,
    OpenAIClient,
    classify_chat_response,
    classify_embedding_response,
    classify_exception,
    classify_status,
)

__all__ = [
    "InsecureTransportError",
    "OpenAIClient",
    "classify_chat_response",
    "classify_embedding_response",
    "classify_exception",
    "classify_status",
    "parse_duration_s",
    "parse_rate_limit",
    "parse_retry_after_s",
    "redact_headers",
]
