"""Azure OpenAI: OpenAI's request and reply shapes at a resource's deployment URLs.

`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…` (and `/embeddings`), where a model's
`model:` names the deployment; the key goes in the `api-key` header, or a Microsoft Entra ID token in
`Authorization: Bearer` (`azure_auth: bearer`). Replies, errors (Azure's 429 bodies: `{"error": {"code": "429",
"message": "… Please retry after 6 seconds."}}`), `retry-after`/`retry-after-ms` and `x-ratelimit-remaining-*`
headers are OpenAI's, classified by the same functions.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from rowloom.config.models import ProviderConfig
from rowloom.models.clients.openai import OpenAIClient, response_format
from rowloom.models.types import ChatRequest

__all__ = ["AzureOpenAIClient", "deployment_url"]


def deployment_url(provider: ProviderConfig, deployment: str, operation: str) -> str:
    """The URL of `operation` (`chat/completions`, `embeddings`) of one deployment, with the API version."""
    return (
        f"{provider.base_url}/openai/deployments/{quote(deployment, safe='')}/{operation}"
        f"?api-version={quote(provider.version or '', safe='')}"
    )


class AzureOpenAIClient(OpenAIClient):
    """A `ChatClient` for an Azure OpenAI resource: OpenAI's shapes at deployment URLs, Azure's key header."""

    def key_headers(self, api_key: str) -> dict[str, str]:
        if self.provider.azure_auth == "bearer":
            return {"Authorization": f"Bearer {api_key}"}
        return {"api-key": api_key}

    def chat_payload(self, request: ChatRequest) -> dict[str, Any]:
        # The deployment is in the URL; the body names no model.
        payload: dict[str, Any] = {**request.params, "messages": request.messages}
        if (fmt := response_format(request)) is not None:
            payload["response_format"] = fmt
        return payload

    def chat_url(self, request: ChatRequest) -> str:
        return deployment_url(self.provider, request.model, "chat/completions")

    def embed_url(self, model: str) -> str:
        return deployment_url(self.provider, model, "embeddings")
