"""The request executor: acquire → call → classify → release → retry, with a scripted fake client."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError, RunAborted
from rowloom.models.admission import FixedLimit, RequestAdmissionController
from rowloom.models.executor import (
    EndpointRejected,
    EndpointUnavailable,
    EndpointUnreachable,
    ModelRequestExecutor,
    RequestFailed,
)
from rowloom.models.types import (
    ChatRequest,
    ChatResponse,
    ClientRequestError,
    ConnectionFailed,
    EmbeddingResponse,
    InvalidReply,
    KeyRejected,
    Overloaded,
    RateLimited,
    RateLimitInfo,
    RequestTimeout,
    ServerError,
    Usage,
)
from rowloom.observe.context import current
from rowloom.observe.events.request import (
    CooldownStarted,
    EndpointDown,
    EndpointUp,
    RequestAdmitted,
    RequestCompleted,
    RequestRetried,
)
from rowloom.observe.sinks import MemorySink

MODEL = ModelConfig(alias="a", provider="p", model="m")
PROVIDER = ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1")
REQUEST = ChatRequest(model="m", messages=({"role": "user", "content": "hello"},))
REPLY = ChatResponse(text="hi", usage=Usage(prompt_tokens=3, completion_tokens=2))
SERVED = replace(REPLY, endpoint="p/m")  # the reply as the executor returns it: naming its endpoint


class InstantClock:
    """Time moves only by sleeping, instantly; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


Step = ChatResponse | BaseException | Callable


class FakeClient:
    """Plays a script of replies and exceptions; the last step repeats forever."""

    def __init__(self, *script: Step):
        self.script = list(script)
        self.attempts: list[str | None] = []

    async def _next(self):
        self.attempts.append(current().attempt)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return await step(len(self.attempts))
        return step

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._next()

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        return await self._next()

    async def aclose(self) -> None:
        return None


def build(*script: Step, limit: int = 4, provider: ProviderConfig = PROVIDER, rng=None, **config):
    clock = InstantClock()
    sink = MemorySink()
    defaults = {"backoff_jitter": 0.0, "retry_after_jitter": 0.0, "backoff_base_s": 0.5, "server_error_backoff_s": 0.5}
    settings = RequestAdmissionConfig(**{**defaults, **config})
    admission = RequestAdmissionController(
        settings, clock=clock, sink=sink, limit_factory=lambda key, bounds: FixedLimit(limit)
    )
    client = FakeClient(*script)
    executor = ModelRequestExecutor(
        admission, {"p": client}, {"a": (MODEL, provider)}, settings, clock=clock, sink=sink, rng=rng
    )
    return executor, client, clock, sink


def outcomes(sink: MemorySink) -> list[str]:
    return [e.outcome for e in sink.of(RequestCompleted)]


def amid_successes(executor: ModelRequestExecutor, clock: InstantClock, error: BaseException) -> Callable:
    """A step that fails with `error` while another request of the endpoint succeeds: the failure is this
    request's own (it spends the retry budget), not a sign that the endpoint is down."""

    async def step(_: int) -> ChatResponse:
        clock.t += 0.01
        other = executor.admission.try_acquire("a")
        executor.admission.release(other, "success", rtt_s=0.01)
        raise error

    return step


async def test_a_success_returns_the_reply_and_releases_the_lease_with_its_usage():
    executor, client, clock, sink = build(REPLY)
    assert await executor.chat("a", REQUEST) == SERVED
    assert executor.admission.in_flight("a") == 0
    completed = sink.of(RequestCompleted)
    assert [(e.outcome, e.tokens) for e in completed] == [("success", 5)]
    assert client.attempts == ["1.1"] and clock.sleeps == []


async def test_every_retry_attempt_is_readmitted_with_a_new_lease():
    executor, client, clock, sink = build(ServerError("bad gateway", status=502), RequestTimeout("slow"), REPLY)
    assert await executor.chat("a", REQUEST) == SERVED
    leases = [e.lease for e in sink.of(RequestAdmitted)]
    assert len(leases) == 3 and len(set(leases)) == 3
    assert outcomes(sink) == ["server_error", "timeout", "success"]
    assert client.attempts == ["1.1", "1.2", "1.3"]  # the correlation id names each attempt
    assert [e.attempt for e in sink.of(RequestAdmitted)] == ["1.1", "1.2", "1.3"]
    assert clock.sleeps == [0.5, 1.0]  # exponential backoff between attempts
    assert executor.admission.in_flight("a") == 0


async def test_429s_do_not_spend_the_retry_budget_and_each_waits_its_own_retry_after():
    executor, _, clock, sink = build(
        *[RateLimited("slow down", status=429, retry_after_s=3.0)] * 5,
        ServerError("bad gateway", status=502),
        REPLY,
        max_attempts=3,
        down_after_failures=2,
    )
    assert await executor.chat("a", REQUEST) == SERVED  # the 5xx is only the first failure that counts
    assert clock.sleeps == [3.0] * 5 + [0.5]  # ...and gets the first backoff, not the sixth
    assert [e.counted for e in sink.of(RequestRetried)] == [False] * 5 + [True]


async def test_a_429_without_retry_after_waits_the_short_default():
    executor, _, clock, _ = build(RateLimited("slow down", status=429), REPLY, rate_limited_retry_s=1.5)
    await executor.chat("a", REQUEST)
    assert clock.sleeps == [1.5]


async def test_a_503_retry_after_is_respected_as_the_least_backoff():
    executor, _, clock, _ = build(Overloaded("busy", status=503, retry_after_s=7.0), REPLY)
    await executor.chat("a", REQUEST)
    assert clock.sleeps == [7.0]


async def test_a_client_error_fails_fast_with_the_providers_message():
    executor, client, clock, sink = build(ClientRequestError("The model `m` does not exist", status=404))
    with pytest.raises(RequestFailed) as info:
        await executor.chat("a", REQUEST)
    failure = info.value
    assert failure.outcome == "client_error" and failure.attempts == 1 and failure.status == 404
    assert "The model `m` does not exist" in str(failure) and "'a'" in str(failure)
    assert len(client.attempts) == 1 and clock.sleeps == []
    assert outcomes(sink) == ["client_error"]


async def test_a_refused_key_stops_every_caller_of_the_endpoint_at_once_instead_of_dropping_rows():
    refused = KeyRejected("HTTP 401 Unauthorized: bad key", status=401, reason="401 Unauthorized", advice="set K")
    executor, client, clock, sink = build(refused, limit=2)
    results = await asyncio.gather(*(executor.chat("a", REQUEST) for _ in range(6)), return_exceptions=True)
    assert all(isinstance(r, EndpointRejected) for r in results), results  # the endpoint's error, not RequestFailed
    error = results[0]
    assert isinstance(error, RunAborted) and error.reason == "401 Unauthorized"
    assert (
        str(error)
        == "p rejected the API key (401 Unauthorized): set K. http://127.0.0.1:9/v1 (model 'm') said: bad key"
    )
    assert len(client.attempts) == 1 and clock.sleeps == []  # the first refusal stops the others before they go out
    assert outcomes(sink) == ["client_error"]
    with pytest.raises(EndpointRejected):
        await executor.chat("a", REQUEST)
    assert len(client.attempts) == 1


async def test_exhausted_retries_raise_request_failed_with_the_last_outcome_and_message():
    executor, client, clock, _ = build(REPLY, max_attempts=3, down_after_failures=2)
    client.script = [
        amid_successes(executor, clock, error)
        for error in (
            ServerError("bad gateway", status=502),
            Overloaded("busy", status=503),
            RequestTimeout("timed out"),
        )
    ]
    with pytest.raises(RequestFailed) as info:
        await executor.chat("a", REQUEST)
    assert info.value.outcome == "timeout" and info.value.attempts == 3
    assert info.value.message == "timed out"
    assert isinstance(info.value, RowloomError)
    assert len(client.attempts) == 3 and clock.sleeps == [0.5, 1.0]
    assert executor.admission.in_flight("a") == 0


async def test_backoff_is_exponential_bounded_and_jittered():
    executor, client, clock, _ = build(
        REPLY,
        max_attempts=7,
        server_error_backoff_s=1.0,
        backoff_max_s=4.0,
        backoff_jitter=0.5,
        rng=random.Random(3),
    )
    client.script = [amid_successes(executor, clock, ServerError("oops"))]
    with pytest.raises(RequestFailed):
        await executor.chat("a", REQUEST)
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(clock.sleeps) == 6
    for slept, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert ceiling * 0.5 <= slept <= ceiling
    assert len(set(clock.sleeps)) == 6  # jittered, not in lockstep


async def test_a_bug_releases_the_lease_as_unexpected_and_propagates_unchanged():
    bug = KeyError("missing")
    executor, client, clock, sink = build(bug)
    with pytest.raises(KeyError) as info:
        await executor.chat("a", REQUEST)
    assert info.value is bug
    assert outcomes(sink) == ["unexpected"]
    assert len(client.attempts) == 1 and clock.sleeps == []
    assert executor.admission.in_flight("a") == 0


async def test_cancellation_releases_the_lease_as_cancelled():
    started = asyncio.Event()

    async def hang(_: int) -> ChatResponse:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    executor, _, _, sink = build(hang)
    task = asyncio.create_task(executor.chat("a", REQUEST))
    await started.wait()
    assert executor.admission.in_flight("a") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes(sink) == ["cancelled"]
    assert executor.admission.in_flight("a") == 0


def test_keyboard_interrupt_releases_the_lease_as_cancelled_and_propagates():
    caught: list[BaseException] = []
    state: dict = {}

    def run() -> None:
        executor, _, _, sink = build(KeyboardInterrupt())
        state.update(executor=executor, sink=sink)
        try:
            asyncio.run(executor.chat("a", REQUEST))
        except KeyboardInterrupt as exc:
            caught.append(exc)

    worker = threading.Thread(target=run)  # its own loop, so the interrupt cannot reach the test runner
    worker.start()
    worker.join()
    assert len(caught) == 1
    assert outcomes(state["sink"]) == ["cancelled"]
    assert state["executor"].admission.in_flight("a") == 0


async def test_an_invalid_reply_propagates_and_counts_as_a_working_endpoint():
    executor, _, _, sink = build(InvalidReply("not JSON"))
    with pytest.raises(InvalidReply):
        await executor.chat("a", REQUEST)
    assert outcomes(sink) == ["success"]


async def test_rate_limit_headers_on_a_429_pause_the_endpoint_until_the_reset():
    spent = RateLimitInfo(remaining_requests=0, reset_requests_s=30.0)
    executor, _, _, sink = build(RateLimited("quota", status=429, retry_after_s=1.0, rate_limit=spent), REPLY)
    assert await executor.chat("a", REQUEST) == SERVED
    assert [e.until for e in sink.of(CooldownStarted)] == [30.0]
    second_attempt = sink.of(RequestAdmitted)[1]
    assert second_attempt.ts >= 30.0  # its own Retry-After was 1 s, but the whole key waited for the reset


async def test_the_circuit_breaker_stops_every_caller_of_an_endpoint_that_only_fails():
    secret_url = ProviderConfig(name="p", base_url="http://user:hunter2@127.0.0.1:9/v1?api-key=abc123")
    executor, client, clock, _ = build(
        ServerError("upstream connect error", status=502),
        limit=1,
        provider=secret_url,
        circuit_breaker_s=10.0,
        max_attempts=1000,
        backoff_base_s=1.0,
        backoff_max_s=1.0,
    )
    results = await asyncio.gather(*(executor.chat("a", REQUEST) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, EndpointUnavailable) for r in results), results
    error = results[0]
    assert isinstance(error, RunAborted)
    message = str(error)
    assert "'p'" in message and "http://127.0.0.1:9/v1" in message and "'m'" in message
    assert "upstream connect error" in message
    assert "hunter2" not in message and "abc123" not in message
    assert 10.0 <= error.failing_for_s <= 12.0
    calls = len(client.attempts)
    with pytest.raises(EndpointUnavailable):
        await executor.chat("a", REQUEST)
    assert len(client.attempts) == calls  # no more traffic to a dead endpoint
    assert clock.now() < 15.0


async def test_the_circuit_breaker_does_not_trip_while_some_requests_succeed():
    async def every_other(call: int) -> ChatResponse:
        if call % 2:
            raise ServerError("flaky")
        return REPLY

    executor, _, clock, _ = build(every_other, circuit_breaker_s=10.0, server_error_backoff_s=1.0, backoff_max_s=1.0)
    for _ in range(30):
        assert await executor.chat("a", REQUEST) == SERVED
    assert clock.now() >= 30.0


async def test_embeddings_are_admitted_on_their_own_domain_key():
    vectors = EmbeddingResponse(vectors=((0.1, 0.2),), usage=Usage(prompt_tokens=4))
    executor, _, _, _ = build(vectors)
    assert await executor.embed("a", ["hello"]) is vectors
    assert executor.admission.key_for("a", domain="embeddings").domain == "embeddings"
    assert "p/m [embeddings]" in executor.admission.snapshot()


async def test_an_unknown_alias_is_a_clear_error():
    executor, _, _, _ = build(REPLY)
    with pytest.raises(RowloomError, match="unknown model alias 'zzz'"):
        await executor.chat("zzz", REQUEST)


async def test_a_plain_server_error_backs_off_less_than_an_overload_signal():
    executor, _, clock, _ = build(
        ServerError("bad gateway", status=502),
        RequestTimeout("slow"),
        REPLY,
        backoff_base_s=0.5,
        server_error_backoff_s=0.1,
    )
    assert await executor.chat("a", REQUEST) == SERVED
    assert clock.sleeps == [0.1, 1.0]  # 5xx: 0.1 s first; the timeout is the second counted failure: 0.5 * 2


# ------------------------------------------------------------------ outages: the endpoint's failure, not the row's


class VirtualClock:
    """Discrete-event time: when every task is idle, the earliest sleeper wakes and time jumps to its deadline.

    Unlike `InstantClock`, concurrent sleepers (backoffs, probe and breaker timers) wake in deadline order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._order), future))
        await future

    async def run(self, awaitable):
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            for _ in range(50):  # let every task that can run, run
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if task.done() or not self._sleepers:
                break
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            future.set_result(None)
        return await task


def build_virtual(*script: Step, limit: int = 4, **config):
    clock = VirtualClock()
    sink = MemorySink()
    settings = RequestAdmissionConfig(**{"backoff_jitter": 0.0, **config})
    admission = RequestAdmissionController(
        settings, clock=clock, sink=sink, limit_factory=lambda key, bounds: FixedLimit(limit)
    )
    client = FakeClient(*script)
    executor = ModelRequestExecutor(
        admission, {"p": client}, {"a": (MODEL, PROVIDER)}, settings, clock=clock, sink=sink
    )
    return executor, client, clock, sink


def refused_between(clock, start: float, end: float) -> Callable:
    """An endpoint that refuses connections from `start` to `end` on the clock, and answers otherwise."""

    async def step(_: int) -> ChatResponse:
        await clock.sleep(0.05)
        if start <= clock.now() < end:
            raise ConnectionFailed("connection refused: Cannot connect to host 127.0.0.1:9")
        return REPLY

    return step


async def test_an_outage_spends_no_attempt_drops_no_request_and_waiters_resume_on_the_probes_success():
    executor, client, clock, sink = build_virtual(REPLY, limit=4, max_attempts=4)  # down after 3 failures in a row
    client.script = [refused_between(clock, 1.0, 12.0)]
    assert await clock.run(executor.chat("a", REQUEST)) == SERVED  # the endpoint worked once
    clock.t = 1.0  # the outage starts
    results = await clock.run(asyncio.gather(*(executor.chat("a", REQUEST) for _ in range(12))))
    assert all(result == SERVED for result in results)  # no request failed for good: no row would be dropped
    assert clock.now() >= 12.0
    down, up = sink.of(EndpointDown), sink.of(EndpointUp)
    assert len(down) == 1 and len(up) == 1 and up[0].probes >= 3
    assert "connection refused" in down[0].last_error
    retried = sink.of(RequestRetried)
    assert retried and all(r.outcome == "connection_error" for r in retried)
    assert sum(r.counted for r in retried) <= 2  # only failures before the endpoint was judged down
    assert not any(r.counted for r in retried if r.ts > down[0].ts)
    assert all(r.delay_s == 0.0 for r in retried if r.ts > down[0].ts)  # no backoff of their own: they wait
    # While down, one request at a time went out (the probe) ...
    admitted_while_down = [e for e in sink.of(RequestAdmitted) if down[0].ts < e.ts < up[0].ts]
    assert admitted_while_down and all(e.in_flight == 1 for e in admitted_while_down)
    # ... and the probe's success admitted the waiters at once (the same instant), not a timer later.
    assert sum(e.ts == up[0].ts for e in sink.of(RequestAdmitted)) == 4
    assert executor.admission.in_flight("a") == 0 and not executor.admission.down("a")


async def test_a_request_that_keeps_failing_while_others_succeed_is_dropped_as_its_own_failure():
    executor, client, clock, sink = build(REPLY, max_attempts=4)
    client.script = [amid_successes(executor, clock, ConnectionFailed("connection reset: by peer"))]
    with pytest.raises(RequestFailed) as info:
        await executor.chat("a", REQUEST)
    assert info.value.outcome == "connection_error" and info.value.attempts == 4
    assert not sink.of(EndpointDown)


async def test_five_percent_errors_among_successes_never_take_the_endpoint_down():
    rng = random.Random(5)

    async def flaky(_: int) -> ChatResponse:
        await clock.sleep(rng.uniform(0.01, 0.05))  # requests overlap: others finish while one is out
        if rng.random() < 0.05:
            raise ServerError("HTTP 500 server error: boom", status=500)
        return REPLY

    executor, client, clock, sink = build_virtual(REPLY, limit=16, max_attempts=8)
    client.script = [flaky]
    results = await clock.run(asyncio.gather(*(executor.chat("a", REQUEST) for _ in range(600))))
    assert all(result == SERVED for result in results)
    assert not sink.of(EndpointDown)
    retried = sink.of(RequestRetried)
    assert len(retried) > 15 and all(r.counted for r in retried)  # each failure was its row's, and counted


async def test_an_endpoint_that_never_answers_stops_within_the_start_up_grace():
    executor, client, clock, _ = build_virtual(REPLY, limit=2, startup_grace_s=5.0)
    client.script = [refused_between(clock, 0.0, float("inf"))]
    gathered = asyncio.gather(*(executor.chat("a", REQUEST) for _ in range(4)), return_exceptions=True)
    results = await clock.run(gathered)
    assert all(isinstance(r, EndpointUnreachable) for r in results), results
    message = str(results[0])
    assert "cannot reach endpoint 'p' at http://127.0.0.1:9/v1" in message and "connection refused" in message
    assert "Is the server running, and is the port in base_url right?" in message
    assert 5.0 <= results[0].failing_for_s < 5.5 and clock.now() < 5.5


def test_a_reply_served_by_an_endpoint_keeps_every_other_field():
    import dataclasses

    from rowloom.models.types import RateLimitInfo, Usage

    reply = ChatResponse("t", Usage(prompt_tokens=3, completion_tokens=4), 0.5, RateLimitInfo(limit_requests=9), "stop")
    assert reply.served_by("p/m") == replace(reply, endpoint="p/m")
    # `served_by` names each field: one added to the reply must be added there too (then here)
    names = [f.name for f in dataclasses.fields(ChatResponse)]
    assert names == ["text", "usage", "latency_s", "rate_limit", "finish_reason", "endpoint"]
