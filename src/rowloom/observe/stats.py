"""Request counters built from request events: outcomes, 429s, in-flight and limit per endpoint, tokens, latency,
endpoint outages, reply-cache hits and misses, batches.

A sink like any other, so the summary, the progress line and benchmarks read one source of truth.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from rowloom.config.pricing import Pricing
from rowloom.observe.events.base import Event


class RequestStats:
    """Counts request attempts by outcome; tracks requests in flight (per endpoint, against its limit), token
    usage and endpoint outages.

    Built from events only, so it reads the same whether the requests ran in this process or on Ray workers.
    """

    def __init__(self) -> None:
        self.by_outcome: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rate_limited = 0
        self.tokens = 0
        self.latency_sum_s = 0.0
        self.keys: set[str] = set()  # endpoints that finished a request attempt
        self.in_flight_by_key: Counter[str] = Counter()
        self.limits: dict[str, int] = {}  # each endpoint's request limit, as last announced
        self.outages: Counter[str] = Counter()
        self.down_total_s: Counter[str] = Counter()  # seconds down in finished outages, per endpoint
        # Per endpoint, its overloads by how they were read: counted, straggler, background (`RequestCompleted`).
        self.overloads: defaultdict[str, Counter[str]] = defaultdict(Counter)
        # Endpoints down now: provider name and when the event arrived (this process's monotonic clock, so a
        # display can count the seconds whichever process or clock emitted it).
        self.down: dict[str, tuple[str, float]] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        # What the hits would have cost, per model alias: [prompt, completion, cached] tokens of replies with usage.
        self.cache_saved: dict[str, list[int]] = {}
        self.batches: dict[str, Counter[str]] = {}  # per batch model alias: `batch_summary`'s counts
        self.batches_running = 0  # batches submitted (or resumed) and not finished, with their lines
        self.batch_lines_running = 0

    def emit(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(self, event)

    def _admitted(self, event: Any) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.in_flight_by_key[event.key] += 1
        self.limits[event.key] = int(event.limit)

    def _completed(self, event: Any) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        key = event.key
        self.in_flight_by_key[key] = max(0, self.in_flight_by_key[key] - 1)
        outcome = str(getattr(event, "outcome", "unknown"))
        self.by_outcome[outcome] += 1
        if outcome == "rate_limited":
            self.rate_limited += 1
        self.tokens += int(getattr(event, "tokens", 0) or 0)
        self.latency_sum_s += float(getattr(event, "latency_s", 0.0) or 0.0)
        self.keys.add(key)
        overload = getattr(event, "overload", None)
        if overload is not None:
            self.overloads[key][overload] += 1

    def _cache_hit(self, event: Any) -> None:
        self.cache_hits += 1
        if event.usage_known:
            saved = self.cache_saved.setdefault(event.alias, [0, 0, 0])
            saved[0] += event.prompt_tokens
            saved[1] += event.completion_tokens
            saved[2] += event.cached_tokens

    def _cache_miss(self, event: Any) -> None:
        self.cache_misses += 1

    def _limit_changed(self, event: Any) -> None:
        self.limits[event.key] = int(event.new)

    def _capacity_snapshot(self, event: Any) -> None:
        """The limits before any request (job start) and between changes."""
        for key, view in event.endpoints.items():
            if view.get("limit") is not None:
                self.limits[key] = int(view["limit"])

    def _endpoint_down(self, event: Any) -> None:
        self.outages[event.key] += 1
        self.down[event.key] = (event.provider, time.monotonic())

    def _endpoint_up(self, event: Any) -> None:
        self.down.pop(event.key, None)
        self.down_total_s[event.key] += float(event.down_for_s)

    def _batch(self, event: Any) -> None:
        counts = self.batches.setdefault(event.alias, Counter())
        if event.kind == "batch_submitted":
            self.batches_running += 1
            self.batch_lines_running += event.lines
            if event.resumed:
                counts["batches_resumed"] += 1
                counts["lines_resumed"] += event.lines
            else:
                counts["batches_submitted"] += 1
                counts["lines_submitted"] += event.lines
                counts["lines_resubmitted"] += event.resubmitted
        elif event.kind == "batch_finished":
            self.batches_running = max(0, self.batches_running - 1)
            self.batch_lines_running = max(0, self.batch_lines_running - event.lines)
            counts[f"batches_{event.status}"] += 1
            counts["lines_failed"] += event.failed
            counts["lines_not_run"] += event.not_run
        elif event.outcome == "success":
            counts["requests_answered"] += 1
            self.tokens += int(event.prompt_tokens or 0) + int(event.completion_tokens or 0)
        else:
            counts["requests_failed"] += 1
            counts[f"requests_failed_{event.outcome}"] += 1

    #: event kind -> the method that takes it. The other kinds are not this sink's business: `kinds` tells a
    #: `FanoutSink` to send it only these (six events per request pass a run's fan-out; two are its).
    _handlers: ClassVar[dict[str, Callable[[RequestStats, Any], None]]] = {
        "request_admitted": _admitted,
        "request_completed": _completed,
        "cache_hit": _cache_hit,
        "cache_miss": _cache_miss,
        "batch_submitted": _batch,
        "batch_finished": _batch,
        "batch_line_completed": _batch,
        "limit_changed": _limit_changed,
        "capacity_snapshot": _capacity_snapshot,
        "endpoint_down": _endpoint_down,
        "endpoint_up": _endpoint_up,
    }
    kinds: ClassVar[frozenset[str]] = frozenset(_handlers)

    def batch_summary(self) -> dict[str, dict[str, int]]:
        """The `batches` section of summary.json, per batch model alias: batches submitted (and resumed from an
        earlier run), how each ended, lines submitted and sent again, lines that failed or never ran in a batch,
        and requests answered or given up on (by outcome)."""
        return {alias: dict(sorted(counts.items())) for alias, counts in sorted(dict(self.batches).items())}

    def close(self) -> None:
        return None

    @property
    def total(self) -> int:
        """Request attempts that ended (any outcome)."""
        return sum(self.by_outcome.values())

    def down_now(self) -> list[tuple[str, float]]:
        """(provider, seconds down) of every provider with an endpoint down now, longest first."""
        now = time.monotonic()
        since: dict[str, float] = {}
        for name, at in list(self.down.values()):  # copied: the event loop may change it meanwhile
            since[name] = min(at, since.get(name, at))
        return sorted(((name, now - at) for name, at in since.items()), key=lambda d: -d[1])

    def loads(self) -> list[tuple[str, int, int]]:
        """(name, requests in flight, limit) per endpoint with a known limit, in name order. The name is the
        provider's (a key label is `provider/model`) when the provider has one endpoint, else the whole label."""
        # Copies first: a display thread reads while the event loop adds keys (copying a dict of str keys is
        # atomic under the GIL; iterating one that grows is not).
        limits, in_flight = dict(self.limits), dict(self.in_flight_by_key)
        providers = Counter(key.split("/", 1)[0] for key in limits)
        rows = []
        for key, limit in limits.items():
            provider = key.split("/", 1)[0]
            rows.append((provider if providers[provider] == 1 else key, in_flight.get(key, 0), limit))
        return sorted(rows)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """The `endpoints` section of summary.json: per endpoint, its outages and the seconds it was down, and
        its overloads that did not teach the limit: timeouts later requests overtook (`stragglers`) and 503/529s
        or timeouts of the kind it sends at any load (`background_overloads`)."""
        now = time.monotonic()
        out = {}
        for key in sorted(self.keys | set(self.outages)):
            ongoing = now - self.down[key][1] if key in self.down else 0.0
            read = self.overloads.get(key, Counter())
            out[key] = {
                "outages": self.outages[key],
                "down_s": round(self.down_total_s[key] + ongoing, 3),
                "stragglers": read["straggler"],
                "background_overloads": read["background"],
            }
        return out

    def summary(self) -> dict[str, Any]:
        """The `requests` section of summary.json."""
        total = self.total
        return {
            "total": total,
            "by_outcome": dict(self.by_outcome),
            "rate_limited_share": round(self.rate_limited / total, 4) if total else 0.0,
            "peak_in_flight": self.peak_in_flight,
            "tokens": self.tokens,
            "mean_latency_s": round(self.latency_sum_s / total, 4) if total else 0.0,
        }

    def cache(self, prices: Mapping[str, Pricing | None] | None = None) -> dict[str, Any]:
        """The `cache` section of summary.json: hits (requests saved), misses, the tokens the hits did not spend
        and, priced with `prices` (by model alias), the money; `cost_saved` is None when a hit's model has no
        prices."""
        prices = prices or {}
        tokens = cost = 0.0
        priced = True
        for alias, (prompt, completion, cached) in dict(self.cache_saved).items():
            tokens += prompt + completion
            price = prices.get(alias)
            if price is None:
                priced = False
            else:
                cost += price.cost(prompt, completion, cached)
        currency = next((p.currency for p in prices.values() if p is not None), None)
        return {
            "hits": self.cache_hits,
            "misses": self.cache_misses,
            "requests_saved": self.cache_hits,
            "tokens_saved": int(tokens),
            "cost_saved": round(cost, 6) if priced and currency is not None else None,
            "currency": currency,
        }
