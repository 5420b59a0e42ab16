"""Counting the prompt tokens of a request without sending it: the model's own tokenizer when rowloom runs the
model (a `type: local` llama.cpp server: `/apply-template`, then `/tokenize`), else an approximation.

Talks only to a local server rowloom started on 127.0.0.1; never to a hosted provider. Counts are cached by the
messages, so the two dry passes and repeated prompts are counted once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp
import orjson

from rowloom.errors import RowloomError

#: Characters per token of the approximation (measured against SmolLM2's tokenizer in docs/estimate.md).
APPROX_CHARS_PER_TOKEN = 4
APPROXIMATION = "approximation: ceil(characters / 4)"
LLAMA_CPP = "model tokenizer (llama.cpp /tokenize, with the chat template)"

Messages = Sequence[Mapping[str, str]]


def approx_tokens(chars: int) -> int:
    """Tokens of `chars` characters by the approximation: characters / 4, rounded up, at least 1."""
    return max(1, math.ceil(chars / APPROX_CHARS_PER_TOKEN))


def message_chars(messages: Messages) -> int:
    """Characters of the messages' contents (what a chat prompt is made of, without its template)."""
    return sum(len(str(m.get("content", ""))) for m in messages)


class TokenCounter(Protocol):
    """Counts the tokens of a chat prompt and of plain text for one model."""

    method: str

    async def prompt(self, messages: Messages) -> int: ...

    async def text(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


class ApproxCounter:
    """ceil(characters / 4) of the messages' contents, with no chat-template overhead: what the provider simulator
    reports, and within the error docs/estimate.md gives of a real BPE tokenizer's count of the contents."""

    method = APPROXIMATION

    async def prompt(self, messages: Messages) -> int:
        return approx_tokens(message_chars(messages))

    async def text(self, text: str) -> int:
        return approx_tokens(len(text))

    async def aclose(self) -> None:
        return None


class TokenizerUnavailable(RowloomError):
    """The local server did not tokenize a prompt; says which server and what it answered."""


class LlamaCppCounter:
    """The exact prompt tokens of a llama.cpp server's model: its chat template applied (`/apply-template`), then
    tokenized (`/tokenize`, special tokens parsed), as the server counts a chat request's `prompt_tokens`."""

    method = LLAMA_CPP

    def __init__(self, root_url: str, api_key: str | None, cache: dict[bytes, int]):
        """`root_url` is `http://127.0.0.1:PORT` (no `/v1`); `cache` is shared by every counter of one model."""
        self.root_url = root_url.rstrip("/")
        self.cache = cache
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60))

    async def _post(self, path: str, body: dict) -> dict:
        async with self._session.post(f"{self.root_url}{path}", json=body) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise TokenizerUnavailable(
                    f"the local llama.cpp server at {self.root_url} answered {path} with {response.status}: {text}"
                )
            return await response.json()

    async def _tokens(self, key: bytes, content: str) -> int:
        count = self.cache.get(key)
        if count is None:
            count = self.cache[key] = len((await self._post("/tokenize", {"content": content}))["tokens"])
        return count

    async def prompt(self, messages: Messages) -> int:
        key = orjson.dumps(["prompt", list(messages)])
        if key in self.cache:
            return self.cache[key]
        rendered = (await self._post("/apply-template", {"messages": list(messages)}))["prompt"]
        return await self._tokens(key, rendered)

    async def text(self, text: str) -> int:
        return await self._tokens(orjson.dumps(["text", text]), text)

    async def aclose(self) -> None:
        await self._session.close()
