"""The simulator's HTTP behaviour: routes, the admission pipeline of one model request, and reply bodies.

Composes config, limits, processor sharing, service draws, replies and stats; owns no sockets or lifecycle
(see `simulator.SimulatorServer`, which also drives outages and tells this app when one cuts its requests).
Must run on one event loop; all state is touched only from it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from rowloom.bench.sim_batches import BatchService
from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_limits import RateLimits
from rowloom.bench.sim_replies import ReplyRequestError, chat_reply, embedding_vector, estimate_tokens
from rowloom.bench.sim_service import Fault, ServiceDraws
from rowloom.bench.sim_shapes import SHAPES
from rowloom.bench.sim_sharing import ProcessorSharing
from rowloom.bench.sim_stats import SimStats

_JSON_HEADERS = {"Content-Type": "application/json"}
# Looks like JSON at a glance but is not (single quotes, bare word): what a broken proxy might send.
_MALFORMED_BODY = b"{'id': 'chatcmpl-sim', 'object': 'chat.completion', choices: None}"
# nginx's convention for "client closed the request", so abandoned requests are visible in /stats.
CLIENT_CLOSED = 499
# Gateway errors come from a proxy in front of the model server, which answers in HTML, not OpenAI JSON.
_GATEWAY_BODIES = {
    502: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    504: b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway "
    b"Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
}
_HTML_HEADERS = {"Content-Type": "text/html"}


@dataclass(slots=True)
class _Work:
    """A parsed model request: usage, whether it is structured, and how to render its reply after service."""

    prompt_tokens: int
    completion_tokens: int
    structured: bool
    render: Callable[[bool], dict[str, Any]]  # argument: violate the schema
    cached_tokens: int = 0  # reported only with `usage_details`
    reasoning_tokens: int = 0


class SimulatorApp:
    """The state and handlers of one simulated provider. Create and use it on a running event loop."""

    def __init__(self, config: SimulatorConfig, on_reset: Callable[[float], None] | None = None):
        """`on_reset(epoch)` is called after a stats reset restarted the schedules (the server re-times outages)."""
        self.config = config
        self.down = False  # an outage is cutting connections: requests cancelled now were dropped, not abandoned
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.stats = SimStats(now)
        self._limits = RateLimits(config.rpm, config.tpm, now)
        self._draws = ServiceDraws(config)
        self._sharing = ProcessorSharing(self.capacity_now) if config.mode == "vllm" else None
        self._ids = itertools.count(1)
        self.shape = SHAPES[config.api]
        self._epoch = now
        self._on_reset = on_reset
        self._step_timers: list[asyncio.TimerHandle] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._arm_schedule()
        # OpenAI's batch API (files + batches); the other API shapes have their own batch APIs, not simulated.
        self.batches = (
            BatchService(
                delay_s=config.batch_delay_s,
                fail_rate=config.batch_fail_rate,
                expire_s=config.batch_expire_s,
                seed=config.seed,
                render=self._batch_reply,
            )
            if config.api == "openai"
            else None
        )

    @property
    def epoch(self) -> float:
        """Loop time the schedules count from: creation or the last reset."""
        return self._epoch

    def web_app(self) -> web.Application:
        """The aiohttp application serving every endpoint."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        shape = self.shape
        app.router.add_post(shape.chat_path, self._chat)
        if shape.embeddings_path is not None:
            app.router.add_post(shape.embeddings_path, self._embeddings)
        if shape.models_path is not None:
            app.router.add_get(shape.models_path, self._models)
        if self.batches is not None:
            self.batches.routes(app, self._denied)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/stats/reset", self._reset)
        app.router.add_get("/health", self._health)
        return app

    def capacity_now(self) -> int:
        """Capacity in force now, per the schedule measured from start or the last reset."""
        return self.config.capacity_at(self._loop.time() - self._epoch)

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` document."""
        now = self._loop.time()
        extra: dict[str, Any] = {"capacity": self.capacity_now(), "mode": self.config.mode, "down": self.down}
        if self.batches is not None:
            extra["batches"] = self.batches.snapshot()
        return self.stats.snapshot(now, **extra)

    def reset(self) -> None:
        """Zero counters, refill rate-limit buckets and restart the capacity schedule clock."""
        now = self._loop.time()
        self.stats.reset(now)
        self._limits.reset(now)
        if self.batches is not None:
            self.batches.reset()
        self._epoch = now
        self._arm_schedule()
        if self._sharing is not None:
            self._sharing.capacity_changed()
        if self._on_reset is not None:
            self._on_reset(now)

    def outage_began(self, connections_cut: int) -> None:
        """The server stopped listening and is cutting `connections_cut` connections; count it."""
        self.down = True
        self.stats.outage(connections_cut)

    def outage_ended(self) -> None:
        """The server listens again."""
        self.down = False

    async def drained(self) -> None:
        """Return once no request is in service (woken by the last one leaving, not by polling)."""
        if self.stats.in_flight > 0:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def close(self) -> None:
        """Cancel the schedule timers (the server is going away)."""
        for timer in self._step_timers:
            timer.cancel()
        self._step_timers.clear()

    def _arm_schedule(self) -> None:
        # One timer per capacity step, so processor sharing re-times completions exactly when capacity moves.
        self.close()
        for at, _ in self.config.capacity_schedule:
            if at > 0:
                self._step_timers.append(self._loop.call_at(self._epoch + at, self._capacity_stepped))

    def _capacity_stepped(self) -> None:
        if self._sharing is not None:
            self._sharing.capacity_changed()

    # --- endpoints -------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._model_call(request, self._prepare_chat)

    async def _embeddings(self, request: web.Request) -> web.Response:
        return await self._model_call(request, self._prepare_embeddings)

    async def _models(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "rowloom-sim"} for m in self.config.models]
        return self._reply(request.path, 200, orjson.dumps({"object": "list", "data": data}))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.snapshot()), headers=_JSON_HEADERS)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b'{"ok":true}', headers=_JSON_HEADERS)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', headers=_JSON_HEADERS)

    # --- one model request -----------------------------------------------------------------------------

    async def _model_call(
        self, request: web.Request, prepare: Callable[[web.Request, dict[str, Any]], _Work]
    ) -> web.Response:
        """Auth -> parse -> capacity (hosted) -> rate limits -> fault -> service -> reply."""
        path = request.path
        denied = self._denied(request)
        if denied is not None:
            return denied
        error = self.shape.error
        try:
            self.shape.check(request)
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ReplyRequestError("the request body must be a JSON object")
            work = prepare(request, body)
        except orjson.JSONDecodeError:
            return self._reply(path, 400, error(400, "the request body is not valid JSON", "invalid_request_error"))
        except ReplyRequestError as exc:
            return self._reply(path, 400, error(400, str(exc), "invalid_request_error", param=exc.param))

        now = self._loop.time()
        config = self.config
        if self._sharing is None:
            capacity = self.capacity_now()
            if self.stats.in_flight >= capacity:
                message = f"The server is at capacity ({capacity} requests in service). Please retry shortly."
                headers = {**self._limits.headers(now), **self._retry_headers(config.retry_after_s)}
                body_bytes = error(429, message, "capacity", "rate_limit_exceeded")
                return self._reply(path, 429, body_bytes, headers)
        elif config.max_queued is not None:
            # vLLM's queue limit: a full waiting queue refuses at once, with no hint of when to come back.
            limit = self.capacity_now() + config.max_queued
            if self.stats.in_flight >= limit:
                message = f"The server's queue is full ({limit} requests running or waiting). Please retry later."
                return self._reply(path, 503, error(503, message, "server_error", "queue_full"))
        decision = self._limits.admit(work.prompt_tokens + work.completion_tokens, now)
        if not decision.allowed:
            message = (
                f"Rate limit reached on {decision.limited_by} per min. Please try again in {decision.wait_s:.3f}s."
            )
            headers = {**decision.headers, **self._retry_headers(decision.wait_s)}
            body_bytes = error(429, message, decision.limited_by or "requests", "rate_limit_exceeded")
            return self._reply(path, 429, body_bytes, headers)

        fault = self._draws.fault()
        if fault is Fault.ERROR:
            status = config.error_status
            if status in _GATEWAY_BODIES:
                return self._reply(path, status, _GATEWAY_BODIES[status], {**decision.headers, **_HTML_HEADERS})
            if status == 400:
                message = "This model's maximum context length is exceeded; please reduce the length of the messages."
                body_bytes = error(400, message, "invalid_request_error", "context_length_exceeded")
                return self._reply(path, status, body_bytes, decision.headers)
            message = "The server had an error while processing your request. Sorry about that!"
            return self._reply(path, status, error(status, message, "server_error"), decision.headers)
        if fault is Fault.OVERLOAD:
            message = "The engine is currently overloaded, please try again later."
            body_bytes = error(config.overload_status, message, "server_error", "overloaded")
            return self._reply(path, config.overload_status, body_bytes, decision.headers)
        violate = work.structured and self._draws.violates_schema()
        service_s = config.hang_s if fault is Fault.TIMEOUT else self._draws.service_s(work.completion_tokens)

        self.stats.enter(now)
        try:
            await self._serve(service_s, hung=fault is Fault.TIMEOUT)
        except asyncio.CancelledError:
            if self.down:
                self.stats.request_cut()
            else:
                self.stats.record(path, CLIENT_CLOSED)
            raise
        finally:
            self.stats.leave(self._loop.time())
            if self.stats.in_flight == 0 and self._drain_waiters:
                for waiter in self._drain_waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                self._drain_waiters.clear()

        reply = work.render(violate)
        omit = fault is None and self._draws.omits_usage()
        if omit:
            del reply["usage"]
        payload = orjson.dumps(reply)
        if fault is Fault.MALFORMED:
            payload = _MALFORMED_BODY
        elif fault is Fault.TRUNCATED:
            payload = payload[: len(payload) // 2]
        elif omit:
            self.stats.usage_omitted()
        else:
            self.stats.add_tokens(work.prompt_tokens, work.completion_tokens, work.cached_tokens, work.reasoning_tokens)
            if fault is None:
                self.stats.served(service_s)
        return self._reply(path, 200, payload, decision.headers)

    async def _serve(self, service_s: float, hung: bool) -> None:
        # A hung request holds its hosted slot but takes no share of vLLM compute: it models a stuck
        # connection, not extra work. Zero-latency requests skip the timer entirely (client benchmarks).
        if self._sharing is not None and not hung:
            await self._sharing.serve(service_s)
        elif service_s > 0:
            await asyncio.sleep(service_s)

    def _prepare_chat(self, request: web.Request, body: dict[str, Any]) -> _Work:
        if body.get("stream"):
            raise ReplyRequestError("streaming is not supported by the simulator", "stream")
        body = self.shape.chat_body(request, body)
        default_max = self.config.default_max_tokens
        words = (self.config.reply_words_min, self.config.reply_words_max)
        reply = chat_reply(body, default_max, words=words)
        usage = {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens}
        cached = reasoning = 0
        if self.config.usage_details:
            cached, reasoning = reply.prompt_tokens // 2, reply.completion_tokens // 3
            usage.update(cached=cached, reasoning=reasoning)

        def render(violate: bool) -> dict[str, Any]:
            final = chat_reply(body, default_max, violate_schema=True, words=words) if violate else reply
            return self.shape.chat_reply(final, body, usage, next(self._ids))

        return _Work(reply.prompt_tokens, reply.completion_tokens, reply.structured, render, cached, reasoning)

    def _batch_reply(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        """One batch line's chat completion (no admission, no service time: the batch's delay stands for both);
        structured replies break their schema at `schema_invalid_rate` as online ones do."""
        words = (self.config.reply_words_min, self.config.reply_words_max)
        reply = chat_reply(body, self.config.default_max_tokens, words=words)
        if reply.structured and self._draws.violates_schema():
            reply = chat_reply(body, self.config.default_max_tokens, violate_schema=True, words=words)
        usage = {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens}
        return self.shape.chat_reply(reply, body, usage, next(self._ids)), reply.prompt_tokens, reply.completion_tokens

    def _prepare_embeddings(self, request: web.Request, body: dict[str, Any]) -> _Work:
        raw = body.get("input")
        if isinstance(raw, str):
            texts = [raw]
        elif isinstance(raw, list) and raw:
            # Token-id inputs (lists of ints) are embedded by their text form: deterministic is all we need.
            texts = [item if isinstance(item, str) else orjson.dumps(item).decode() for item in raw]
        else:
            raise ReplyRequestError("'input' must be a string or a non-empty list", "input")
        dim = body.get("dimensions") or self.config.embedding_dim
        if not isinstance(dim, int) or dim < 1:
            raise ReplyRequestError("'dimensions' must be a positive integer", "dimensions")
        model = str(body.get("model") or request.match_info.get("deployment", ""))
        tokens = sum(estimate_tokens(len(text)) for text in texts)

        def render(_violate: bool) -> dict[str, Any]:
            data = [
                {"object": "embedding", "index": i, "embedding": embedding_vector(model, text, dim)}
                for i, text in enumerate(texts)
            ]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return {"object": "list", "data": data, "model": model, "usage": usage}

        return _Work(tokens, 0, False, render)

    # --- helpers -------------------------------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.shape.authorized(request, self.config.api_key):
            return None
        message = f"Incorrect API key provided. {self.shape.key_hint()}"
        body = self.shape.error(401, message, "invalid_request_error", "invalid_api_key")
        return self._reply(request.path, 401, body)

    def _retry_headers(self, wait_s: float) -> dict[str, str]:
        if not self.config.send_retry_after:
            return {}
        return {
            "Retry-After": str(max(1, math.ceil(wait_s))),
            "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
        }

    def _reply(self, path: str, status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
        self.stats.record(path, status)
        headers = self.shape.limit_headers(headers) if headers else headers
        all_headers = {**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
        return web.Response(status=status, body=body, headers=all_headers)
