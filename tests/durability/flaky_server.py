"""A tiny OpenAI-compatible server on 127.0.0.1 that breaks connections on purpose, and records every prompt.

The provider simulator answers with HTTP faults; this server covers what a status code cannot: a connection
closed before the reply, a TCP reset, and a body cut off mid-way. Replies come from the simulator's pure
reply function, so they are deterministic and valid against any requested schema.
"""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import orjson
from aiohttp import web

from rowloom.bench.sim_replies import chat_reply

FAULTS = ("close", "reset", "partial")


class FlakyServer:
    """`async with FlakyServer(rates) as server:` then point a provider at `server.base_url`.

    `rates` maps a fault kind ("close", "reset", "partial") to the share of requests that get it; `reply_text`,
    when set, is the content of every reply; `echo_key_401` rejects every request, quoting its key back.
    """

    def __init__(
        self,
        rates: dict[str, float] | None = None,
        seed: int = 0,
        reply_text: str | None = None,
        echo_key_401: bool = False,
    ):
        self.rates = rates or {}
        self.reply_text = reply_text
        self.echo_key_401 = echo_key_401
        self.rng = random.Random(seed)
        self.prompts: list[str] = []
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.ok = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _draw(self) -> str | None:
        x = self.rng.random()
        for kind in FAULTS:
            rate = self.rates.get(kind, 0.0)
            if x < rate:
                return kind
            x -= rate
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.echo_key_401:  # like gateways that quote the rejected key back
            auth = request.headers.get("Authorization", "")
            message = f"Incorrect API key provided: {auth}. Keys look like {auth.removeprefix('Bearer ')}."
            error = {"error": {"message": message, "code": "invalid_api_key"}}
            return web.json_response(error, status=401)
        body: dict[str, Any] = orjson.loads(await request.read())
        self.prompts += [m["content"] for m in body["messages"] if m["role"] == "user"]
        reply = chat_reply(body, 60)
        payload = orjson.dumps(
            {
                "id": "chatcmpl-flaky",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": self.reply_text or reply.content}}
                ],
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
            }
        )
        fault = self._draw()
        transport = request.transport
        if fault is not None and transport is not None:
            self.faults[fault] += 1
            if fault == "close":  # no reply at all: the client sees the server disconnect
                transport.close()
                raise web.HTTPInternalServerError()  # never sent; ends the handler
            if fault == "reset":  # SO_LINGER 0 makes close() send RST: "connection reset by peer"
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                raise web.HTTPInternalServerError()
            # partial: headers promise the whole body, half of it arrives, then the connection closes
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            transport.close()
            return response
        self.ok += 1
        return web.Response(body=payload, content_type="application/json")

    async def __aenter__(self) -> FlakyServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
