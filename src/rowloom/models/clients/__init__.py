"""Adapters that talk to model providers, one per API style; each raises classified `ProviderError`s.

The names below load on first use (PEP 562): importing one light module of this package (`headers`, as the
simulator does) must not load every adapter and, through them, the whole config package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "AnthropicClient": "anthropic",
    "AzureOpenAIClient": "azure",
    "InsecureTransportError": "openai",
    "OpenAIClient": "openai",
    "classify_chat_response": "openai",
    "classify_embedding_response": "openai",
    "classify_exception": "openai",
    "classify_status": "openai",
    "parse_duration_s": "headers",
    "parse_rate_limit": "headers",
    "parse_retry_after_s": "headers",
    "redact_headers": "headers",
    "HttpTransport": "transport",
}

__all__ = [
    "AnthropicClient",
    "AzureOpenAIClient",
    "HttpTransport",
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # loaded once
    return value


def client_for(provider: ProviderConfig, *, pool_size: int = 64, api_key: str | None = None) -> HttpTransport:
    """The adapter of a provider's API style (`type`; a `local` provider's server speaks OpenAI's)."""
    from rowloom.models.clients.anthropic import AnthropicClient
    from rowloom.models.clients.azure import AzureOpenAIClient
    from rowloom.models.clients.openai import OpenAIClient

    kinds = {"anthropic": AnthropicClient, "azure_openai": AzureOpenAIClient}
    return kinds.get(provider.type, OpenAIClient)(provider, pool_size=pool_size, api_key=api_key)
