"""Benchmark scenarios of endpoint pools (issue #16): one alias `llm` whose `endpoints` list simulated providers.

Each simulator is its own provider; every request event names the member it went to by its resource key
(`provider/sim-small`), which is how results are split per endpoint (`rowloom.bench.pool_metrics`). Importing this
module adds its scenarios to `rowloom.bench.scenarios.SCENARIOS` (that module imports it at its end, so either
import order registers them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rowloom.bench.scenarios import SAMPLERS, SCENARIOS, Endpoint, Scenario, _chain_columns, sim

POOL_ALIAS = "llm"
MODEL = "sim-small"
# Every member's ceiling (the learned limit is found below it): room above the largest capacity here, as the
# single-endpoint vLLM scenarios give theirs (128).
CEILING = 128
SPREAD = {"jitter": 0.5, "jitter_kind": "lognormal"}  # lognormal service times with mean LATENCY, as *_spread_05


@dataclass(frozen=True)
class PoolEndpoint(Endpoint):
    """One simulated provider as a member of the pool alias; results name it by its provider (the alias is
    shared by every member)."""

    tier: Literal["primary", "fallback"] = "primary"

    @property
    def label(self) -> str:
        return self.provider


def member(provider: str, seed: int, tier: Literal["primary", "fallback"] = "primary", **sim_kwargs: Any):
    """A pool member simulator (each its own seed, so their latency draws differ)."""
    return PoolEndpoint(provider, sim(seed=seed, **sim_kwargs), (POOL_ALIAS,), tier)


def pool_members(scenario: Scenario) -> list[PoolEndpoint]:
    """The scenario's pool members in config order (none for a scenario without a pool)."""
    return [ep for ep in scenario.endpoints if isinstance(ep, PoolEndpoint)]


def pool_chain(members: tuple[PoolEndpoint, ...], spill_after_s: float | None = None, *, known: bool = False):
    """The examples/chain.yaml workload (3 chained LLM columns) on the pool alias whose endpoints are `members`;
    `known` fixes each member's limit at its simulator's capacity (nothing left to learn: a reference run)."""

    def build(urls: dict[str, str]) -> dict[str, Any]:
        endpoints: list[dict[str, Any]] = [{"provider": m.provider, "tier": m.tier} for m in members]
        if known:
            for endpoint, m in zip(endpoints, members, strict=True):
                endpoint["max_parallel_requests"] = m.sim.capacity
        model: dict[str, Any] = {
            "alias": POOL_ALIAS,
            "model": MODEL,
            "endpoints": endpoints,
            "max_parallel_requests": CEILING,
            "inference": {"temperature": 0.7, "max_tokens": 64},
        }
        if spill_after_s is not None:
            model["spill_after_s"] = spill_after_s
        run: dict[str, Any] = {"row_group_size": 100, "seed": 1}
        if known:
            run["request_admission"] = {"algorithm": "fixed"}
        return {
            "providers": [{"name": name, "base_url": url} for name, url in urls.items()],
            "models": [model],
            "columns": SAMPLERS + _chain_columns(POOL_ALIAS),
            "run": run,
        }

    return build


def _vllm_trio(**big: Any) -> tuple[PoolEndpoint, ...]:
    """vLLM-style members of capacity 8, 16 and 32 (summed 56), lognormal spread sigma 0.5, mean 200 ms."""
    return (
        member("v8", 1, mode="vllm", capacity=8, **SPREAD),
        member("v16", 2, mode="vllm", capacity=16, **SPREAD),
        member("v32", 3, mode="vllm", capacity=32, **SPREAD, **big),
    )


def _fallback_pair() -> tuple[PoolEndpoint, ...]:
    """A hosted primary of capacity 16 and a hosted fallback of capacity 64."""
    return (
        member("primary", 1, capacity=16, **SPREAD),
        member("fallback", 2, "fallback", capacity=64, **SPREAD),
    )


VLLM = _vllm_trio()
OUTAGE = _vllm_trio(outages="5+15")  # v32 refuses connections from 5 s to 20 s after the run starts
FALLBACK = _fallback_pair()
HOSTED = (member("h8", 1, capacity=8, **SPREAD), member("h24", 2, capacity=24, **SPREAD))

POOL_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "pool_vllm",
            "chain on one pool of three vLLM-style endpoints, capacity 8, 16 and 32 (spread sigma 0.5)",
            VLLM,
            pool_chain(VLLM),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
        Scenario(
            "pool_vllm_known",
            "pool_vllm with each member's limit fixed at its true capacity: what perfect knowledge achieves",
            VLLM,
            pool_chain(VLLM, known=True),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
        Scenario(
            "pool_outage",
            "pool_vllm with the capacity-32 endpoint refusing connections from 5 s to 20 s",
            OUTAGE,
            pool_chain(OUTAGE),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
        Scenario(
            "pool_fallback",
            "chain on a primary of capacity 16 and a fallback of capacity 64 (spill_after_s 5)",
            FALLBACK,
            pool_chain(FALLBACK),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
        Scenario(
            "pool_fallback_nospill",
            "pool_fallback with spill_after_s 3600: the fallback must take nothing",
            FALLBACK,
            pool_chain(FALLBACK, spill_after_s=3600),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
        Scenario(
            "pool_hosted",
            "chain on one pool of two hosted endpoints (429 beyond capacity 8 and 24, spread sigma 0.5)",
            HOSTED,
            pool_chain(HOSTED),
            600,
            None,
            notes={"pool": POOL_ALIAS},
        ),
    ]
}

SCENARIOS.update(POOL_SCENARIOS)
