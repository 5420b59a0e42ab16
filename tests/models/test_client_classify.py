"""The pure parts of the OpenAI client: header parsing, redaction, and reply/exception classification."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import aiohttp
import orjson
import pytest

from rowloom.models.clients import (
    classify_chat_response,
    classify_embedding_response,
    classify_exception,
    classify_status,
    parse_duration_s,
    parse_rate_limit,
    parse_retry_after_s,
    redact_headers,
)
from rowloom.models.types import (
    ChatResponse,
    ClientRequestError,
    ConnectionFailed,
    EmbeddingResponse,
    KeyRejected,
    Outcome,
    Overloaded,
    RateLimited,
    RateLimitInfo,
    RequestTimeout,
    ServerError,
)

OK_BODY = orjson.dumps(
    {
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("2m", 120.0),
        ("250us", 0.00025),
        ("0.75", 0.75),
        ("12", 12.0),
        (" 3s ", 3.0),
        ("0s", 0.0),
    ],
)
def test_reset_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s", "1s garbage", "m5", "nan", "inf", "1s2"])
def test_unparseable_reset_durations_are_ignored(text: str) -> None:
    assert parse_duration_s(text) is None


def test_reset_given_as_epoch_timestamp_becomes_seconds_from_now() -> None:
    assert parse_duration_s("1700000030", now=1_700_000_000.0) == pytest.approx(30.0)
    assert parse_duration_s("1600000000", now=1_700_000_000.0) == 0.0


def test_rate_limit_headers_parse_counts_and_resets_case_insensitively() -> None:
    info = parse_rate_limit(
        {
            "X-RateLimit-Limit-Requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "1m30s",
        }
    )
    assert info == RateLimitInfo(
        limit_requests=500,
        remaining_requests=499,
        reset_requests_s=pytest.approx(0.12),
        limit_tokens=30000,
        remaining_tokens=0,
        reset_tokens_s=90.0,
    )
    assert info.exhausted_until_s == 90.0


def test_rate_limit_parsing_ignores_garbage_and_keeps_the_rest() -> None:
    info = parse_rate_limit(
        {
            "x-ratelimit-remaining-requests": "lots",
            "x-ratelimit-limit-requests": "10.0",
            "x-ratelimit-reset-requests": "?",
        }
    )
    assert info == RateLimitInfo(limit_requests=10)


def test_no_rate_limit_headers_means_empty_info() -> None:
    assert parse_rate_limit({"content-type": "application/json"}) == RateLimitInfo()


def test_retry_after_ms_is_preferred_over_retry_after() -> None:
    assert parse_retry_after_s({"Retry-After": "3", "retry-after-ms": "1500"}) == pytest.approx(1.5)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after_s({"retry-after": "7"}) == 7.0
    now = 1_700_000_000.0
    date = formatdate(now + 42, usegmt=True)
    assert parse_retry_after_s({"Retry-After": date}, now=now) == pytest.approx(42.0)
    assert parse_retry_after_s({"Retry-After": formatdate(now - 100, usegmt=True)}, now=now) == 0.0


def test_unparseable_or_absent_retry_after_is_none() -> None:
    assert parse_retry_after_s({}) is None
    assert parse_retry_after_s({"Retry-After": "whenever"}) is None
    assert parse_retry_after_s({"retry-after-ms": "x", "retry-after": "2"}) == 2.0


def test_redaction_hides_credentials_whatever_their_case() -> None:
    redacted = redact_headers({"Authorization": "Bearer sk-1", "API-KEY": "k", "X-Trace": "t"})
    assert redacted == {"Authorization": "<redacted>", "API-KEY": "<redacted>", "X-Trace": "t"}


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (429, b'{"error":{"message":"slow down","type":"requests"}}', RateLimited),
        (
            429,
            b'{"error":{"message":"You exceeded your quota","code":"insufficient_quota"}}',
            KeyRejected,
        ),
        (429, b'{"error":{"message":"quota","type":"insufficient_quota","code":null}}', KeyRejected),
        (503, b"busy", Overloaded),
        (529, b'{"error":{"message":"overloaded"}}', Overloaded),
        (408, b"", RequestTimeout),
        (504, b"gateway timeout", ServerError),  # a gateway's: transient, retried quickly, no capacity signal
        (500, b"boom", ServerError),
        (502, b"bad gateway", ServerError),
        (400, b'{"error":{"message":"bad"}}', ClientRequestError),
        (401, b'{"error":{"message":"no key"}}', KeyRejected),
        (403, b'{"error":{"message":"no access"}}', KeyRejected),
        (404, b"not found", ClientRequestError),
        (307, b"", ClientRequestError),
    ],
)
def test_status_classification(status: int, body: bytes, error_type: type) -> None:
    error = classify_status(status, {"Retry-After": "2"}, body, 0.25)
    assert type(error) is error_type
    assert error.status == status
    assert error.latency_s == 0.25
    assert error.retry_after_s == 2.0


def test_2xx_status_is_not_an_error() -> None:
    assert classify_status(200, {}, b"{}", 0.1) is None


def test_quota_exhausted_is_not_retryable_but_rate_limit_is() -> None:
    quota = classify_status(429, {}, b'{"error":{"code":"insufficient_quota","message":"q"}}', 0.0)
    limited = classify_status(429, {}, b'{"error":{"message":"rpm"}}', 0.0)
    assert (quota.retryable, quota.outcome) == (False, Outcome.CLIENT_ERROR)
    assert (limited.retryable, limited.outcome) == (True, Outcome.RATE_LIMITED)


def test_a_refused_key_is_the_endpoints_error_and_any_other_client_error_the_requests() -> None:
    """No request can get past a 401/403 or an exhausted quota; a 400 or 404 may be one request's own."""
    for status, body in [(401, b""), (403, b""), (429, b'{"error":{"code":"insufficient_quota","message":"q"}}')]:
        error = classify_status(status, {}, body, 0.0)
        assert isinstance(error, ClientRequestError) and error.endpoint_wide, status
    assert classify_status(401, {}, b"", 0.0).reason == "401 Unauthorized"
    assert classify_status(403, {}, b"", 0.0).reason == "403 Forbidden"
    for status in (400, 404, 422):
        assert not classify_status(status, {}, b"", 0.0).endpoint_wide, status


def test_client_error_keeps_provider_message_truncated() -> None:
    long = "x" * 2000
    error = classify_status(400, {}, orjson.dumps({"error": {"message": "bad field: " + long}}), 0.0)
    assert "bad field: xxx" in str(error)
    assert len(str(error)) < 600


@pytest.mark.parametrize(
    "body",
    [
        b'{"object":"error","message":"vllm says no","type":"BadRequestError","code":400}',
        b'{"detail":"vllm says no"}',
        b'{"error":"vllm says no"}',
        b"vllm says no",
    ],
)
def test_error_message_found_in_common_body_shapes(body: bytes) -> None:
    assert "vllm says no" in str(classify_status(422, {}, body, 0.0))


def test_errors_carry_rate_limit_info() -> None:
    error = classify_status(429, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, b"", 0)
    assert error.rate_limit.exhausted_until_s == 360.0


def test_ok_chat_reply_parses_text_usage_and_finish_reason() -> None:
    reply = classify_chat_response(200, {"x-ratelimit-remaining-tokens": "9"}, OK_BODY, 0.5)
    assert isinstance(reply, ChatResponse)
    assert (reply.text, reply.finish_reason, reply.latency_s) == ("hi", "stop", 0.5)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 5)
    assert reply.rate_limit.remaining_tokens == 9


def _reply_with_usage(usage: object) -> dict:
    body = orjson.loads(OK_BODY)
    if usage is None:
        del body["usage"]
    else:
        body["usage"] = usage
    reply = classify_chat_response(200, {}, orjson.dumps(body), 0.1)
    assert isinstance(reply, ChatResponse)
    u = reply.usage
    return {"p": u.prompt_tokens, "c": u.completion_tokens, "cached": u.cached_tokens, "r": u.reasoning_tokens}


def test_usage_details_parse_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert _reply_with_usage(usage) == {"p": 100, "c": 40, "cached": 64, "r": 30}
    details_null = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None}
    assert _reply_with_usage(details_null) == {"p": 5, "c": 2, "cached": 0, "r": 0}


def test_a_reply_without_usage_has_unknown_usage_not_zero_tokens() -> None:
    missing = classify_chat_response(200, {}, orjson.dumps({"choices": orjson.loads(OK_BODY)["choices"]}), 0.1)
    assert isinstance(missing, ChatResponse) and missing.usage.known is False
    assert _reply_with_usage(None) == {"p": 0, "c": 0, "cached": 0, "r": 0}
    reported = classify_chat_response(200, {}, OK_BODY, 0.1)
    assert isinstance(reported, ChatResponse) and reported.usage.known is True


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>oops</html>", "not JSON"),
        (OK_BODY[:-7], "not JSON"),
        (b"", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"id":"x"}', "no choices"),
        (b'{"choices":[]}', "no choices"),
        (b'{"choices":[{"finish_reason":"stop"}]}', "no message"),
        (b'{"choices":[{"message":{"role":"assistant"}}]}', "no message content"),
        (b'{"choices":[{"message":{"content":null,"refusal":"nope"}}]}', "refusal: nope"),
    ],
)
def test_malformed_ok_replies_are_server_errors(body: bytes, what: str) -> None:
    error = classify_chat_response(200, {}, body, 0.1)
    assert type(error) is ServerError
    assert str(error).startswith("malformed reply")
    assert what in str(error)
    assert error.retryable


def test_error_object_inside_a_200_is_a_server_error_with_its_message() -> None:
    error = classify_chat_response(200, {}, b'{"error":{"message":"upstream died"}}', 0.1)
    assert type(error) is ServerError
    assert "upstream died" in str(error)


def test_content_parts_are_joined() -> None:
    body = b'{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}'
    assert classify_chat_response(200, {}, body, 0.0).text == "ab"


def test_embeddings_are_returned_in_input_order() -> None:
    body = b'{"data":[{"index":1,"embedding":[3,4]},{"index":0,"embedding":[1.5,2]}],"usage":{"prompt_tokens":4}}'
    reply = classify_embedding_response(200, {}, body, 0.1, expected=2)
    assert isinstance(reply, EmbeddingResponse)
    assert reply.vectors == ((1.5, 2.0), (3.0, 4.0))
    assert reply.usage.prompt_tokens == 4


def test_embedding_count_mismatch_is_malformed() -> None:
    body = b'{"data":[{"index":0,"embedding":[1]}]}'
    assert type(classify_embedding_response(200, {}, body, 0.1, expected=2)) is ServerError


@pytest.mark.parametrize(
    ("exc", "error_type", "phrase"),
    [
        (TimeoutError(), RequestTimeout, "timed out"),
        (aiohttp.ServerTimeoutError("read"), RequestTimeout, "timed out"),
        (aiohttp.ServerDisconnectedError(), ConnectionFailed, "connection reset"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), ServerError, "connection reset"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), ConnectionFailed, "connection reset"),
    ],
)
def test_transport_failures_are_classified(exc: BaseException, error_type: type, phrase: str) -> None:
    error = classify_exception(exc, 1.5)
    assert type(error) is error_type
    assert phrase in str(error)
    assert error.latency_s == 1.5


def _connector_error(cls: type[aiohttp.ClientConnectorError], os_error: OSError) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 18099, False, True, None, None, None)
    return cls(key, os_error)


@pytest.mark.parametrize(
    ("exc", "phrase"),
    [
        (_connector_error(aiohttp.ClientConnectorError, ConnectionRefusedError(111, "refused")), "connection refused"),
        (_connector_error(aiohttp.ClientConnectorError, OSError(113, "No route to host")), "cannot connect"),
        (_connector_error(aiohttp.ClientConnectorDNSError, OSError(-2, "Name not known")), "DNS lookup failed"),
        (_connector_error(aiohttp.ClientConnectorSSLError, OSError(1, "handshake")), "TLS handshake failed"),
        (aiohttp.ServerDisconnectedError(), "server disconnected"),
    ],
)
def test_connection_failures_are_connection_errors_without_a_capacity_signal(exc: BaseException, phrase: str):
    error = classify_exception(exc, 0.01)
    assert type(error) is ConnectionFailed and error.retryable
    assert error.outcome is Outcome.CONNECTION_ERROR and not error.outcome.is_overload
    assert error.outcome.is_unavailable
    assert phrase in str(error)


def test_a_rejected_tls_certificate_stays_a_setup_error():
    cert = aiohttp.ClientConnectorCertificateError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 443, True, True, None, None, None), Exception("bad cert")
    )
    error = classify_exception(cert, 0.0)
    assert type(error) is ClientRequestError and not error.retryable


@pytest.mark.parametrize(
    ("status", "error_type", "outcome"),
    [
        (502, ServerError, Outcome.SERVER_ERROR),
        (504, ServerError, Outcome.SERVER_ERROR),
        (503, Overloaded, Outcome.OVERLOADED),
        (529, Overloaded, Outcome.OVERLOADED),
        (408, RequestTimeout, Outcome.TIMEOUT),
        (429, RateLimited, Outcome.RATE_LIMITED),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Retry-After": "3"}])
def test_gateway_errors_are_transient_server_errors_and_429_503_529_are_overload(status, error_type, outcome, headers):
    error = classify_status(status, headers, b"<html>gateway</html>", 0.1)
    assert type(error) is error_type and error.outcome is outcome
    assert error.outcome.is_overload is (outcome is not Outcome.SERVER_ERROR)  # 502/504: no capacity signal


@pytest.mark.parametrize("exc", [KeyError("bug"), TypeError("bug"), asyncio.CancelledError()])
def test_bugs_and_cancellation_are_not_provider_failures(exc: BaseException) -> None:
    assert classify_exception(exc, 0.0) is None
