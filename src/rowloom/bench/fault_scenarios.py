"""Benchmark scenarios of an endpoint that fails: errors, hung requests, 503/529 at any load, outages, flapping,
and several at once (`real_world_mix`).

Importing this module adds its scenarios to `rowloom.bench.scenarios.SCENARIOS` (that module imports it at its
end, so either import order registers them).
"""

from __future__ import annotations

from typing import Any

from rowloom.bench.scenarios import SCENARIOS, Scenario, _lognormal, _one, chain

HUNG_TIMEOUT_S = 2.0


def hung_requests(urls: dict[str, str]) -> dict[str, Any]:
    """The chain with a client timeout of 2 s: a request the server holds open longer is given up and retried."""
    config = chain(64)(urls)
    for provider in config["providers"]:
        provider["timeout_s"] = HUNG_TIMEOUT_S
    return config


FAULT_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("server_errors_5pct", "chain, 5% HTTP 500", _one(capacity=16, error_rate=0.05), chain(16), 200, 200),
        Scenario(
            "hung_5pct",
            "chain, capacity 16: 5% of requests are held open 30 s; the client gives up at 2 s and retries",
            _one(capacity=16, timeout_rate=0.05, hang_s=30.0),
            hung_requests,
            300,
            None,
        ),
        Scenario(
            "overloaded_5pct",
            "chain, capacity 16: 5% of requests are answered 529 (overloaded) at once, whatever the load",
            _one(capacity=16, overload_rate=0.05, overload_status=529),
            chain(64),
            300,
            None,
        ),
        Scenario(
            "real_world_mix",
            "chain, capacity 16, lognormal spread 0.5 and 2 ms per reply token, 2% answered 529 and 1% held 30 s "
            "(the client gives up at 2 s), down 5 s from 6 s into the run",
            _one(
                capacity=16,
                **_lognormal(0.5),
                latency_per_token_s=0.002,
                overload_rate=0.02,
                overload_status=529,
                timeout_rate=0.01,
                hang_s=30.0,
                outages="6+5",
            ),
            hung_requests,
            400,
            None,
        ),
        Scenario(
            "outage",
            "chain, capacity 16: the endpoint refuses connections for 20 s from 3 s into the run",
            _one(capacity=16, outages="3+20"),
            chain(64),
            600,
            None,
        ),
        Scenario(
            "outage_short",
            "chain, capacity 16: the endpoint refuses connections for 5 s from 2 s into the run",
            _one(capacity=16, outages="2+5"),
            chain(64),
            300,
            300,
        ),
        Scenario(
            "flapping",
            "chain, capacity 16: the endpoint is up 5 s, down 5 s, for 60 s",
            _one(capacity=16, outages="5:5:60"),
            chain(64),
            1000,
            None,
        ),
    ]
}

SCENARIOS.update(FAULT_SCENARIOS)
