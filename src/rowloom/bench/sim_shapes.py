"""The API shapes the simulator speaks: OpenAI's chat completions, Anthropic's Messages API, Azure OpenAI's
deployment URLs. Each says where its routes are, how it checks a key, how its request reads as the OpenAI-style
body the reply generator answers, how a reply, an error and the rate-limit headers look.

Behaviour (capacity, rate limits, faults, service times) is the app's and the same in every shape; only the wire
format differs, so every admission benchmark can run against each shape.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from aiohttp import web

from rowloom.bench.sim_replies import ChatReply, ReplyRequestError
from rowloom.models.clients.headers import parse_duration_s

__all__ = ["SHAPES", "AnthropicShape", "ApiShape", "AzureShape"]


class ApiShape:
    """OpenAI's shape; the others override what differs."""

    name = "openai"
    chat_path = "/v1/chat/completions"
    embeddings_path: str | None = "/v1/embeddings"
    models_path: str | None = "/v1/models"

    def authorized(self, request: web.Request, key: str | None) -> bool:
        return key is None or request.headers.get("Authorization") == f"Bearer {key}"

    def key_hint(self) -> str:
        return "Send 'Authorization: Bearer <key>' with the simulator's key."

    def check(self, request: web.Request) -> None:
        """Raise `ReplyRequestError` for a request this API refuses before reading its body."""

    def chat_body(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        """The request as the OpenAI-style body `chat_reply` answers."""
        return body

    def chat_reply(self, reply: ChatReply, body: dict[str, Any], usage: dict[str, int], reply_id: int) -> dict:
        """The reply document; `usage` has prompt, completion, cached and reasoning token counts (the last two
        only with `usage_details`)."""
        block: dict[str, Any] = {
            "prompt_tokens": usage["prompt"],
            "completion_tokens": usage["completion"],
            "total_tokens": usage["prompt"] + usage["completion"],
        }
        if "cached" in usage:
            block["prompt_tokens_details"] = {"cached_tokens": usage["cached"]}
            block["completion_tokens_details"] = {"reasoning_tokens": usage["reasoning"]}
        return {
            "id": f"chatcmpl-sim{reply_id:x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": block,
        }

    def error(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
        """An error document of this API."""
        return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

    def limit_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The rate-limit headers (given as OpenAI's `x-ratelimit-*`) as this API sends them."""
        return headers


class AnthropicShape(ApiShape):
    """`POST /v1/messages` with `x-api-key` and `anthropic-version`; structured output by a forced tool call;
    `anthropic-ratelimit-*` headers with RFC 3339 resets; 529 `overloaded_error`."""

    name = "anthropic"
    chat_path = "/v1/messages"
    embeddings_path = None

    _ERROR_TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def authorized(self, request: web.Request, key: str | None) -> bool:
        return key is None or request.headers.get("x-api-key") == key

    def key_hint(self) -> str:
        return "Send 'x-api-key: <key>' with the simulator's key."

    def check(self, request: web.Request) -> None:
        if not request.headers.get("anthropic-version"):
            raise ReplyRequestError("anthropic-version: header is required")

    def chat_body(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            raise ReplyRequestError("max_tokens: Field required (a positive integer)", "max_tokens")
        if "seed" in body:
            raise ReplyRequestError("seed: Extra inputs are not permitted", "seed")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ReplyRequestError("messages: at least one message is required", "messages")
        converted = []
        if isinstance(body.get("system"), str):
            converted.append({"role": "system", "content": body["system"]})
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise ReplyRequestError("messages: each message has role user or assistant", "messages")
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            converted.append({"role": message["role"], "content": str(content)})
        openai: dict[str, Any] = {"model": body.get("model", ""), "messages": converted}
        openai["max_tokens"] = body["max_tokens"]
        tools = body.get("tools")
        choice = body.get("tool_choice")
        if tools is not None:
            if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
                raise ReplyRequestError("tools: a list of tool objects", "tools")
            name = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
            tool = next((t for t in tools if t.get("name") == name), None)
            if tool is None:
                raise ReplyRequestError("tool_choice must name one of the tools ({type: tool, name})", "tool_choice")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise ReplyRequestError("tools.input_schema: a JSON Schema of type object", "tools")
            openai["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
            openai["_tool"] = name
        return openai

    def chat_reply(self, reply: ChatReply, body: dict[str, Any], usage: dict[str, int], reply_id: int) -> dict:
        tool = body.get("_tool")
        if tool is not None:
            value = orjson.loads(reply.content)
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_sim{reply_id:x}",
                    "name": tool,
                    "input": value if isinstance(value, dict) else {"value": value},
                }
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": reply.content}]
            stop = "max_tokens" if reply.finish_reason == "length" else "end_turn"
        cached = usage.get("cached", 0)
        return {
            "id": f"msg_sim{reply_id:x}",
            "type": "message",
            "role": "assistant",
            "model": str(body.get("model", "")),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage["prompt"] - cached,
                "output_tokens": usage["completion"],
                "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": 0,
            },
        }

    def error(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
        kind = self._ERROR_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})

    def limit_headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = {k: v for k, v in headers.items() if not k.lower().startswith("x-ratelimit-")}
        now = time.time()
        for kind in ("requests", "tokens"):
            for part in ("limit", "remaining"):
                if (value := headers.get(f"x-ratelimit-{part}-{kind}")) is not None:
                    out[f"anthropic-ratelimit-{kind}-{part}"] = value
            reset = headers.get(f"x-ratelimit-reset-{kind}")
            if reset is not None:
                seconds = _seconds(reset)
                when = datetime.fromtimestamp(now + seconds, UTC).replace(microsecond=0)
                out[f"anthropic-ratelimit-{kind}-reset"] = when.isoformat().replace("+00:00", "Z")
        return out


class AzureShape(ApiShape):
    """`/openai/deployments/{deployment}/chat/completions?api-version=…` with the `api-key` header (or a bearer
    token); the deployment names the model; Azure's 429 body says when to retry."""

    name = "azure"
    chat_path = "/openai/deployments/{deployment}/chat/completions"
    embeddings_path = "/openai/deployments/{deployment}/embeddings"
    models_path = None

    def authorized(self, request: web.Request, key: str | None) -> bool:
        if key is None:
            return True
        return request.headers.get("api-key") == key or request.headers.get("Authorization") == f"Bearer {key}"

    def key_hint(self) -> str:
        return "Send 'api-key: <key>' (or 'Authorization: Bearer <token>') with the simulator's key."

    def check(self, request: web.Request) -> None:
        if not request.query.get("api-version"):
            raise ReplyRequestError("Missing required query parameter: api-version", "api-version")

    def chat_body(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": request.match_info.get("deployment", "")}

    def error(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
        if status == 429:
            message = (
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded the rate "
                f"limit of your current pricing tier. {message}"
            )
        return orjson.dumps({"error": {"code": str(status) if status == 429 else (code or type_), "message": message}})


def _seconds(value: str) -> float:
    """Seconds in one of the simulator's own reset values (`format_duration`: `1s`, `250ms`, `1m30s`)."""
    return parse_duration_s(value) or 0.0


SHAPES: dict[str, ApiShape] = {shape.name: shape for shape in (ApiShape(), AnthropicShape(), AzureShape())}
