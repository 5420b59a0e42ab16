"""Azure OpenAI adapter on request/response pairs written from Azure OpenAI's public REST reference: deployment
URLs with the API version, the `api-key` header or a bearer token, and Azure's 429 bodies and headers."""

from __future__ import annotations

import orjson
import pytest

from rowloom.config import DatasetConfig
from rowloom.config.models import ProviderConfig
from rowloom.errors import ConfigError
from rowloom.models.clients import client_for
from rowloom.models.clients.azure import AzureOpenAIClient, deployment_url
from rowloom.models.clients.openai import classify_chat_response
from rowloom.models.types import ChatRequest, RateLimited

ENDPOINT = "https://contoso.openai.azure.com"


def provider(**fields) -> ProviderConfig:
    return ProviderConfig(name="az", type="azure_openai", base_url=ENDPOINT, api_key_env="AZURE_TEST_KEY", **fields)


def test_requests_go_to_the_deployment_the_model_names_with_the_api_version():
    client = AzureOpenAIClient(provider(api_version="2024-10-21"), api_key="k")
    request = ChatRequest(model="gpt-4o mini", messages=({"role": "user", "content": "Hi"},), params={"max_tokens": 9})
    assert client.chat_url(request) == (
        f"{ENDPOINT}/openai/deployments/gpt-4o%20mini/chat/completions?api-version=2024-10-21"
    )
    assert deployment_url(provider(), "emb", "embeddings").endswith(
        "/deployments/emb/embeddings?api-version=2024-10-21"
    )
    payload = client.chat_payload(request)
    assert "model" not in payload and payload["max_tokens"] == 9


@pytest.mark.parametrize(
    ("auth", "header", "value"), [("api-key", "api-key", "k1"), ("bearer", "Authorization", "Bearer k1")]
)
def test_the_key_goes_in_azures_header_or_as_a_bearer_token(monkeypatch, auth, header, value):
    monkeypatch.setenv("AZURE_TEST_KEY", "k1")
    client = client_for(provider(azure_auth=auth))
    assert isinstance(client, AzureOpenAIClient) and client._headers[header] == value


def test_azures_429_body_and_headers_are_a_rate_limit_with_its_retry_after():
    body = orjson.dumps(
        {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
                "after 6 seconds.",
            }
        }
    )
    headers = {"retry-after": "6", "retry-after-ms": "6000", "x-ratelimit-remaining-requests": "0"}
    error = classify_chat_response(429, headers, body, 0.1)
    assert isinstance(error, RateLimited) and error.retry_after_s == 6.0
    assert error.rate_limit.remaining_requests == 0 and "Please retry after 6 seconds" in str(error)


def test_config_rules_of_the_new_types():
    with pytest.raises(ValueError, match="base_url is required for a provider of type azure_openai"):
        ProviderConfig(name="az", type="azure_openai")
    with pytest.raises(ValueError, match="azure_auth applies only"):
        ProviderConfig(name="x", base_url="http://127.0.0.1:1/v1", azure_auth="bearer")
    assert provider().version == "2024-10-21"
    data = {
        "providers": [{"name": "c", "type": "anthropic"}],
        "models": [{"alias": "m", "provider": "c", "model": "claude"}],
        "columns": [
            {"name": "a", "type": "llm_text", "model": "m", "prompt": "hi"},
            {"name": "e", "type": "embedding", "model": "m", "input": "a"},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        DatasetConfig.from_dict(data)
    text = str(caught.value)
    assert "models[0] (m).inference.max_tokens: is required by Anthropic's Messages API" in text
    assert "columns[1] (e).model: is on an Anthropic provider, whose API has no embeddings" in text
