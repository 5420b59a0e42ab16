"""Live metrics: a sink that keeps Prometheus metrics of one run, and the HTTP endpoint that serves them.

Imports `prometheus_client`, so import this module only when `--metrics-port` is given. Each sink owns its own
`CollectorRegistry` (never the global one), so runs in one process do not share or collide on metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from rowloom.config.pricing import Pricing
from rowloom.observe.events.base import Event
from rowloom.observe.sources import SourceSums

_TOKEN_KINDS = ("prompt", "completion", "cached", "reasoning")


class PrometheusSink:
    """Turns events into request, limit, queue and row metrics in a per-run registry."""

    def __init__(self, registry: CollectorRegistry | None = None, prices: Mapping[str, Pricing | None] | None = None):
        """`prices` (by model alias) price the reported usage into `rowloom_cost`; without, it stays empty."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.prices = {alias: p for alias, p in (prices or {}).items() if p is not None}
        r = self.registry
        ep, pool = ["endpoint"], ["pool"]
        self.requests = Counter(
            "rowloom_requests", "Request attempts that ended, by endpoint and outcome.", [*ep, "outcome"], registry=r
        )
        self.tokens = Counter("rowloom_request_tokens", "Tokens reported by the provider.", ep, registry=r)
        # The token ledger's counts (docs/observability.md#the-token-ledger), by what they are and whose.
        ledger = [*ep, "model", "column"]
        self.ledger_tokens = Counter(
            "rowloom_tokens",
            "Tokens the provider reported, by kind: prompt, completion, cached (of prompt), reasoning (of completion).",
            [*ledger, "kind"],
            registry=r,
        )
        self.cost = Counter(
            "rowloom_cost",
            "Cost of the reported usage at the config's prices, by currency (models without prices: absent).",
            [*ledger, "currency"],
            registry=r,
        )
        unknown = "Replies without a usage block: their tokens are unknown."
        self.unknown_usage = Counter("rowloom_requests_unknown_usage", unknown, ledger, registry=r)
        cache = [*ledger, "result"]
        self.cache = Counter(
            "rowloom_cache_requests",
            "Chat requests the reply cache answered (hit) or sent on (miss).",
            cache,
            registry=r,
        )
        self.cache_saved_tokens = Counter(
            "rowloom_cache_saved_tokens", "Tokens the reply cache's hits did not spend.", ledger, registry=r
        )
        self.cache_saved_cost = Counter(
            "rowloom_cache_saved_cost",
            "What the hits would have cost at the config's prices.",
            [*ledger, "currency"],
            registry=r,
        )
        self.limit = Gauge("rowloom_request_limit", "Current adaptive concurrency limit.", ep, registry=r)
        self.in_flight = Gauge("rowloom_requests_in_flight", "Request attempts holding a lease.", ep, registry=r)
        self.queued = Gauge("rowloom_requests_queued", "Request attempts waiting for a lease.", ep, registry=r)
        self.tasks_queued = Gauge("rowloom_tasks_queued", "Ready tasks waiting, by resource pool.", pool, registry=r)
        self.task_leases = Gauge("rowloom_task_leases", "Tasks running, by resource pool.", pool, registry=r)
        self.rows_written = Counter("rowloom_rows_written", "Rows written to disk in this run.", registry=r)
        self.rows_dropped = Counter("rowloom_rows_dropped", "Rows dropped in this run.", registry=r)
        self.records_requested = Gauge("rowloom_records_requested", "Records this run was asked for.", registry=r)
        self.row_groups_in_flight = Gauge("rowloom_row_groups_in_flight", "Row groups admitted.", registry=r)
        self.frontier_target = Gauge("rowloom_frontier_target", "Target number of row groups in flight.", registry=r)
        # Gauges are kept per source (a Ray run's workers emit under "<job>:<worker>") and exported summed.
        # Queue depths are derived (+1 queued, -1 admitted from the queue) and resynchronised from snapshots.
        self._sums = SourceSums()

    def emit(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def close(self) -> None:
        return None

    def _gauge(
        self, gauge: Any, name: tuple[str, ...], e: Any, *, value: float | None = None, delta: float = 0
    ) -> None:
        """Set (or move) this source's part of a gauge and export the sum over sources."""
        source = e.job or ""
        total = self._sums.set(name, source, value) if value is not None else self._sums.add(name, source, delta)
        (gauge.labels(*name[1:]) if len(name) > 1 else gauge).set(total)

    # requests
    def _on_request_queued(self, e: Any) -> None:
        self._gauge(self.queued, ("queued", e.key), e, value=e.waiters)
        self._gauge(self.limit, ("limit", e.key), e, value=e.limit)

    def _on_request_admitted(self, e: Any) -> None:
        if e.wait_s > 0:  # admitted from the queue (a pool's, or its endpoint's own)
            self._gauge(self.queued, ("queued", e.queue or e.key), e, delta=-1)
        self.in_flight.labels(e.key).inc()
        self._gauge(self.limit, ("limit", e.key), e, value=e.limit)

    def _on_request_completed(self, e: Any) -> None:
        self.requests.labels(e.key, e.outcome).inc()
        self.in_flight.labels(e.key).dec()
        if e.tokens:
            self.tokens.labels(e.key).inc(e.tokens)
        if e.usage_known is False:
            self.unknown_usage.labels(e.key, e.alias or "", e.group).inc()
        elif e.usage_known:
            for kind in _TOKEN_KINDS:
                if count := getattr(e, f"{kind}_tokens"):
                    self.ledger_tokens.labels(e.key, e.alias or "", e.group, kind).inc(count)
            if (price := self.prices.get(e.alias or "")) is not None:
                cost = price.cost(e.prompt_tokens or 0, e.completion_tokens or 0, e.cached_tokens or 0)
                self.cost.labels(e.key, e.alias or "", e.group, price.currency).inc(cost)

    def _on_cache_hit(self, e: Any) -> None:
        self.cache.labels(e.key, e.alias, e.group, "hit").inc()
        if e.usage_known:
            self.cache_saved_tokens.labels(e.key, e.alias, e.group).inc(e.prompt_tokens + e.completion_tokens)
            if (price := self.prices.get(e.alias)) is not None:
                cost = price.cost(e.prompt_tokens, e.completion_tokens, e.cached_tokens)
                self.cache_saved_cost.labels(e.key, e.alias, e.group, price.currency).inc(cost)

    def _on_cache_miss(self, e: Any) -> None:
        self.cache.labels(e.key, e.alias, e.group, "miss").inc()

    def _on_limit_changed(self, e: Any) -> None:
        self._gauge(self.limit, ("limit", e.key), e, value=e.new)

    def _on_capacity_snapshot(self, e: Any) -> None:
        for key, view in e.endpoints.items():
            if isinstance(view.get("limit"), int):
                self._gauge(self.limit, ("limit", key), e, value=view["limit"])
            if isinstance(view.get("waiters"), int):
                self._gauge(self.queued, ("queued", key), e, value=view["waiters"])

    # tasks, rows and the frontier
    def _on_task_queued(self, e: Any) -> None:
        self._gauge(self.tasks_queued, ("tasks_queued", e.pool), e, delta=1)

    def _on_task_admitted(self, e: Any) -> None:
        self._gauge(self.tasks_queued, ("tasks_queued", e.pool), e, delta=-1)
        self.task_leases.labels(e.pool).inc()

    def _on_task_released(self, e: Any) -> None:
        self.task_leases.labels(e.pool).dec()

    def _on_health_snapshot(self, e: Any) -> None:
        for pool, view in e.pools.items():
            if isinstance(view, dict) and isinstance(view.get("queued"), int):
                self._gauge(self.tasks_queued, ("tasks_queued", pool), e, value=view["queued"])
        self._gauge(self.frontier_target, ("frontier_target",), e, value=e.frontier_target)
        self._gauge(self.row_groups_in_flight, ("row_groups_in_flight",), e, value=e.row_groups_in_flight)

    def _on_job_started(self, e: Any) -> None:
        self.records_requested.set(e.num_records)

    def _on_row_group_admitted(self, e: Any) -> None:
        self._gauge(self.row_groups_in_flight, ("row_groups_in_flight",), e, value=e.in_flight)

    def _on_row_group_checkpointed(self, e: Any) -> None:
        self.rows_written.inc(e.rows)
        self.rows_dropped.inc(e.dropped)
        self._gauge(self.row_groups_in_flight, ("row_groups_in_flight",), e, delta=-1)

    def _on_frontier_changed(self, e: Any) -> None:
        self._gauge(self.frontier_target, ("frontier_target",), e, value=e.new)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes are not news; the run's own output stays readable


class MetricsServer:
    """Serves a registry at `http://HOST:PORT/metrics` from a daemon thread; `with MetricsServer(...) as server:`.

    `port=0` binds a free port (read it from `.port`). The host defaults to 127.0.0.1: metrics stay on this machine
    unless the caller names another interface.
    """

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1"):
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (after `start`)."""
        if self._httpd is None:
            raise RuntimeError("the metrics server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        """Bind and serve in a daemon thread; returns self."""
        self._httpd = make_server(
            self.host, self._requested_port, make_wsgi_app(self.registry), _ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rowloom-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
