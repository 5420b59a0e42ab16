"""The dry client: a `ChatClient` that sends no generation request. It counts each request's prompt tokens and
answers with a placeholder reply, so the real plan and scheduler render every downstream prompt.

`Bound.HIGH` answers as long as the request's `max_tokens` allows (and reports that many completion tokens, the
worst case); `Bound.LOW` answers as briefly as the column's type allows. Knows no columns or rows.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from rowloom.config.models import ProviderConfig
from rowloom.engine.estimate.counting import ApproxCounter, LlamaCppCounter, TokenCounter
from rowloom.engine.estimate.placeholders import filler_text, json_placeholder
from rowloom.models.types import ChatClient, ChatRequest, ChatResponse, EmbeddingResponse, Usage

#: Reply length the placeholders stand for when a model sets no `max_tokens` (its worst case has no bound).
UNBOUNDED_STANDIN_TOKENS = 256
_EMBEDDING_DIM = 8


class Bound(enum.StrEnum):
    """Which end of the range a dry pass measures."""

    LOW = "low"
    HIGH = "high"


def completion_cap(request: ChatRequest) -> int | None:
    """The request's `max_completion_tokens` or `max_tokens`, None when it sets neither."""
    cap = request.params.get("max_completion_tokens") or request.params.get("max_tokens")
    return cap if isinstance(cap, int) and cap > 0 else None


class DryClient:
    """Answers every chat request at once with a placeholder and the usage it stands for."""

    def __init__(self, counter: TokenCounter, bound: Bound):
        self.counter = counter
        self.bound = bound

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await asyncio.sleep(0)  # a real client yields: keep the scheduler's interleaving
        prompt = await self.counter.prompt(request.messages)
        cap = completion_cap(request) or UNBOUNDED_STANDIN_TOKENS
        full = self.bound is Bound.HIGH
        if request.json_schema is not None:
            text = json_placeholder(request.json_schema, full=full, tokens=cap)
        else:
            text = filler_text(cap if full else 1)
        completion = cap if full else await self.counter.text(text)
        return ChatResponse(text, Usage(prompt_tokens=prompt, completion_tokens=completion), finish_reason="stop")

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        tokens = 0
        for text in inputs:
            tokens += await self.counter.text(text)
        vectors = tuple((1.0,) + (0.0,) * (_EMBEDDING_DIM - 1) for _ in inputs)
        return EmbeddingResponse(vectors, Usage(prompt_tokens=tokens))

    async def aclose(self) -> None:
        await self.counter.aclose()


def dry_client_factory(
    bound: Bound, caches: dict[str, dict[bytes, int]], methods: dict[str, str]
) -> Callable[[ProviderConfig, str | None], ChatClient]:
    """A `RequestRuntime` client factory of dry clients: a local provider's counts with its llama.cpp server's
    tokenizer (cached in `caches` by provider name, across passes), every other provider's by the approximation.
    Records the counting method of each provider in `methods`."""

    def build(provider: ProviderConfig, api_key: str | None) -> ChatClient:
        counter: TokenCounter
        if provider.type == "local" and provider.base_url is not None:
            root = provider.base_url.removesuffix("/v1")
            counter = LlamaCppCounter(root, api_key, caches.setdefault(provider.name, {}))
        else:
            counter = ApproxCounter()
        methods[provider.name] = counter.method
        return DryClient(counter, bound)

    return build
