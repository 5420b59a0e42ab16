"""Adapters that talk to model providers, one per API style; each raises classified `ProviderError`s."""

from rowloom.config.models import ProviderConfig
from rowloom.models.clients.anthropic import AnthropicClient
from rowloom.models.clients.azure import AzureOpenAIClient
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
from rowloom.models.clients.transport import HttpTransport

__all__ = [
    "AnthropicClient",
    "AzureOpenAIClient",
    "InsecureTransportError",
    "OpenAIClient",
    "classify_chat_response",
    "classify_embedding_response",
    "classify_exception",
    "classify_status",
    "client_for",
    "parse_duration_s",
    "parse_rate_limit",
    "parse_retry_after_s",
    "redact_headers",
]


def client_for(provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None) -> HttpTransport:
    """The adapter of a provider's API style (`type`; a `local` provider's server speaks OpenAI's)."""
    kinds = {"anthropic": AnthropicClient, "azure_openai": AzureOpenAIClient}
    return kinds.get(provider.type, OpenAIClient)(provider, pool_size=pool_size, api_key=api_key)
