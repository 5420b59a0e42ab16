"""Providers (OpenAI-compatible endpoints) and the model aliases that columns use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rowloom.config.base import ConfigModel


class ProviderConfig(ConfigModel):
    """An OpenAI-compatible endpoint. The API key is read from the environment, never written in the config."""

    name: str = Field(min_length=1, description="Name that models refer to.")
    type: Literal["openai"] = Field("openai", description="API style of the endpoint.")
    base_url: str = Field(description="Base URL including the version prefix, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key; unset variable = no Authorization header."
    )
    extra_headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with every request.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    allow_insecure: bool = Field(False, description="Allow sending an API key over plain HTTP to a non-loopback host.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
        return value.rstrip("/")


class InferenceParams(ConfigModel):
    """Sampling parameters sent with every request of a model; `extra` passes provider-specific ones."""

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    seed: int | None = None
    stop: list[str] | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="Extra body fields, passed through.")

    def as_body(self) -> dict[str, Any]:
        """The request-body fields these parameters set."""
        body = {k: v for k, v in self.model_dump(exclude={"extra"}).items() if v is not None}
        body.update(self.extra)
        return body


class ModelConfig(ConfigModel):
    """A model alias used by columns: which provider, which model id, how to sample, how hard to push it."""

    alias: str = Field(min_length=1, description="Name columns use in `model:`.")
    provider: str = Field(description="Name of a provider in `providers`.")
    model: str = Field(min_length=1, description="Model id sent to the provider.")
    inference: InferenceParams = Field(default_factory=InferenceParams)
    max_parallel_requests: int | None = Field(
        None, ge=1, description="Ceiling on concurrent requests; the real capacity is discovered below it."
    )
    rpm: int | None = Field(None, ge=1, description="Optional requests-per-minute budget enforced before sending.")
    tpm: int | None = Field(None, ge=1, description="Optional tokens-per-minute budget enforced before sending.")
