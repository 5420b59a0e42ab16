"""Reading provider reply headers (Retry-After, `x-ratelimit-*`) and redacting secret request headers.

Pure functions only: no I/O, no HTTP library objects beyond a case-insensitive header mapping.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

from rowloom.models.types import RateLimitInfo

__all__ = [
    "SECRET_HEADERS",
    "parse_duration_s",
    "parse_rate_limit",
    "parse_retry_after_s",
    "redact_headers",
]

#: Request headers whose values are credentials by name; compared lower-case. (A client treats the value of every
#: header a provider's `extra_headers` sets as secret, whatever its name.)
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "ocp-apim-subscription-key",
        "x-auth-token",
        "cookie",
    }
)

_REDACTED = "<redacted>"

# One Go-style duration term ("1.5s", "6m", "20ms"); a whole value is one or more terms.
_DURATION_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# A bare number this large is a Unix timestamp, not a duration (some providers send reset as epoch seconds).
_EPOCH_THRESHOLD = 1_000_000_000

_NO_RATE_LIMIT = RateLimitInfo()
_RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def ci_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Make header lookups case-insensitive; aiohttp's reply headers already are."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


def parse_duration_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds in a reset value: `"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`, `"0.5"`; None when unparseable.

    A bare number above 1e9 is a Unix timestamp, turned into seconds from `now` (default: the wall clock).
    Negative results are clamped to zero.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            return None
        if number > _EPOCH_THRESHOLD:
            number -= time.time() if now is None else now
        return max(number, 0.0)
    total = 0.0
    pos = 0
    for match in _DURATION_TERM.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        return None
    return total


def _parse_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number == number and abs(number) != float("inf") else None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo:
    """The `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` budget; unparseable values are ignored."""
    headers = ci_headers(headers)
    get = headers.get
    raw = [get(name) for name in _RATE_LIMIT_HEADERS]
    if not any(raw):
        return _NO_RATE_LIMIT
    return RateLimitInfo(
        limit_requests=_parse_count(raw[0]),
        remaining_requests=_parse_count(raw[1]),
        reset_requests_s=parse_duration_s(raw[2]),
        limit_tokens=_parse_count(raw[3]),
        remaining_tokens=_parse_count(raw[4]),
        reset_tokens_s=parse_duration_s(raw[5]),
    )


def parse_retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait before retrying: `retry-after-ms` (preferred), else `Retry-After` in seconds or as an
    HTTP date (relative to `now`, default the wall clock). None when absent or unparseable; never negative."""
    headers = ci_headers(headers)
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            pass
        else:
            if value == value and value != float("inf"):
                return max(value, 0.0)
    text = headers.get("retry-after")
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return max(value, 0.0) if value == value and value != float("inf") else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of `headers` safe to print: credential values (Authorization, api-key…) replaced."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: (_REDACTED if name.lower() in SECRET_HEADERS else value) for name, value in items}
