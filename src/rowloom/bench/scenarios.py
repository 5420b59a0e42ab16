"""Named benchmark scenarios: a dataset config plus the simulated endpoints it runs against.

Each scenario says how to build its config from the simulators' URLs and what the ideal span is; the runner
starts the simulators, runs the job and measures. Quick variants keep the whole quick set under 3 minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rowloom.bench.sim_config import SimulatorConfig

LATENCY = 0.2


@dataclass(frozen=True)
class Endpoint:
    """One simulated provider: the aliases that use it and how it behaves."""

    provider: str
    sim: SimulatorConfig
    aliases: tuple[str, ...]

    @property
    def label(self) -> str:
        """The endpoint's name in results: its one alias, or the provider when several aliases share it."""
        return self.aliases[0] if len(self.aliases) == 1 else self.provider


@dataclass(frozen=True)
class Scenario:
    """A benchmark: endpoints, a config builder, a size, and the number of chained LLM calls per row."""

    name: str
    description: str
    endpoints: tuple[Endpoint, ...]
    build: Callable[[dict[str, str]], dict[str, Any]]  # provider name -> base_url  =>  config dict
    num_records: int
    quick_records: int | None = None  # None: not in the quick set
    critical_path_calls: int = 3  # LLM calls chained along one row
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def in_quick(self) -> bool:
        return self.quick_records is not None

    def records(self, quick: bool) -> int:
        return self.quick_records if quick and self.quick_records else self.num_records


def sim(**kwargs: Any) -> SimulatorConfig:
    kwargs.setdefault("latency_s", LATENCY)
    kwargs.setdefault("models", ("sim-small",))
    return SimulatorConfig(**kwargs)


def _providers(urls: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "base_url": url} for name, url in urls.items()]


def _model(alias: str, provider: str, mpr: int | None, **extra: Any) -> dict[str, Any]:
    model: dict[str, Any] = {
        "alias": alias,
        "provider": provider,
        "model": "sim-small",
        "inference": {"temperature": 0.7, "max_tokens": 64},
    }
    if mpr is not None:
        model["max_parallel_requests"] = mpr
    model.update(extra)
    return model


def _chain_columns(alias: str, suffix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "name": f"question{suffix}",
            "type": "llm_text",
            "model": alias,
            "prompt": "Write one question about {{ topic }} at difficulty {{ difficulty }}/5.",
        },
        {
            "name": f"answer{suffix}",
            "type": "llm_text",
            "model": alias,
            "prompt": f"Answer: {{{{ question{suffix} }}}}",
        },
        {
            "name": f"review{suffix}",
            "type": "llm_structured",
            "model": alias,
            "prompt": f"Grade {{{{ answer{suffix} }}}} to {{{{ question{suffix} }}}}.",
            "schema": {
                "type": "object",
                "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "reason": {"type": "string"}},
                "required": ["score", "reason"],
            },
        },
    ]


SAMPLERS = [
    {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "maritime law", "jazz"]},
    {"name": "difficulty", "type": "uniform", "low": 1, "high": 5, "integer": True},
]


def chain(mpr: int | None, run: dict[str, Any] | None = None, **model_extra: Any):
    """The examples/chain.yaml workload against one endpoint."""

    def build(urls: dict[str, str]) -> dict[str, Any]:
        return {
            "providers": _providers(urls),
            "models": [_model("writer", "sim", mpr, **model_extra)],
            "columns": SAMPLERS + _chain_columns("writer"),
            "run": {"row_group_size": 100, "seed": 1, **(run or {})},
        }

    return build


def fan_out_fan_in(urls: dict[str, str]) -> dict[str, Any]:
    branches = [
        {"name": f"view{i}", "type": "llm_text", "model": "writer", "prompt": f"Angle {i} on {{{{ topic }}}}."}
        for i in range(4)
    ]
    merge = {
        "name": "synthesis",
        "type": "llm_text",
        "model": "writer",
        "prompt": "Combine: {{ view0 }} {{ view1 }} {{ view2 }} {{ view3 }}",
    }
    return {
        "providers": _providers(urls),
        "models": [_model("writer", "sim", 32)],
        "columns": [SAMPLERS[0], *branches, merge],
        "run": {"row_group_size": 100, "seed": 1},
    }


def two_models(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "providers": _providers(urls),
        "models": [_model("small", "small", 8), _model("big", "big", 32)],
        "columns": SAMPLERS + _chain_columns("small", "_s")[:2] + _chain_columns("big", "_b")[:2],
        "run": {"row_group_size": 100, "seed": 1},
    }


def cpu_bottleneck(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "providers": _providers(urls),
        "models": [_model("writer", "sim", 16)],
        "columns": [
            *SAMPLERS,
            _chain_columns("writer")[0],
            {
                "name": "parsed",
                "type": "custom",
                "function": "rowloom.bench.workloads:burn_cpu",
                "inputs": ["question"],
                "dtype": "int",
            },
            {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "{{ question }} ({{ parsed }})"},
        ],
        "run": {"row_group_size": 100, "seed": 1},
    }


def under_admitted(urls: dict[str, str]) -> dict[str, Any]:
    config = chain(64)(urls)
    config["run"].update(row_group_size=10, initial_row_groups_in_flight=1, max_row_groups_in_flight=64)
    # The endpoint's capacity is known (limit starts at the ceiling): what is measured is the frontier alone.
    config["run"]["request_admission"] = {"initial_limit": 64}
    return config


def two_endpoints(first: tuple[str, int], second: tuple[str, int], **run: Any):
    """One LLM column on the first endpoint, a chain of two on the second (each endpoint its own provider)."""
    (a, cap_a), (b, cap_b) = first, second

    def build(urls: dict[str, str]) -> dict[str, Any]:
        return {
            "providers": _providers(urls),
            "models": [_model(a, a, cap_a), _model(b, b, cap_b)],
            "columns": [
                *SAMPLERS,
                {"name": f"{a}_q", "type": "llm_text", "model": a, "prompt": f"{a.title()}: {{{{ topic }}}}"},
                {"name": f"{b}_q", "type": "llm_text", "model": b, "prompt": f"{b.title()}: {{{{ topic }}}}"},
                {"name": f"{b}_a", "type": "llm_text", "model": b, "prompt": f"Answer: {{{{ {b}_q }}}}"},
            ],
            "run": {"row_group_size": 100, "seed": 1, **run},
        }

    return build


def large(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "providers": _providers(urls),
        "models": [_model("writer", "sim", 64)],
        "columns": [*SAMPLERS, _chain_columns("writer")[0]],
        "run": {"row_group_size": 1000, "seed": 1, "max_row_groups_in_flight": 10},
    }


def memory(urls: dict[str, str]) -> dict[str, Any]:
    config = large(urls)
    config["run"].update(row_group_size=100, max_row_groups_in_flight=10)
    return config


def mixed_lengths(urls: dict[str, str]) -> dict[str, Any]:
    """Three chained columns whose replies differ in length 16x (max_tokens 32, 128, 512) on one endpoint."""
    models = [
        {**_model(alias, "sim", 64), "inference": {"temperature": 0.7, "max_tokens": tokens}}
        for alias, tokens in (("short", 32), ("medium", 128), ("long", 512))
    ]
    return {
        "providers": _providers(urls),
        "models": models,
        "columns": [
            SAMPLERS[0],
            {"name": "title", "type": "llm_text", "model": "short", "prompt": "A title about {{ topic }}."},
            {"name": "outline", "type": "llm_text", "model": "medium", "prompt": "Outline for: {{ title }}"},
            {"name": "essay", "type": "llm_text", "model": "long", "prompt": "Write the essay: {{ outline }}"},
        ],
        "run": {"row_group_size": 100, "seed": 1},
    }


def _lognormal(sigma: float) -> dict[str, Any]:
    """Load-independent spread like real replies: lognormal service times with mean `LATENCY`."""
    return {"jitter": sigma, "jitter_kind": "lognormal"}


def _one(provider: str = "sim", **sim_kwargs: Any) -> tuple[Endpoint, ...]:
    return (Endpoint(provider, sim(**sim_kwargs), ("writer",)),)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("matched_cap", "chain, max_parallel_requests = capacity = 16", _one(capacity=16), chain(16), 200, 200),
        Scenario(
            "oversubscribed_cap",
            "chain, max_parallel_requests 64 vs capacity 16",
            _one(capacity=16),
            chain(64),
            200,
            200,
        ),
        Scenario(
            "unset_cap", "chain, max_parallel_requests unset (discovery)", _one(capacity=16), chain(None), 200, 200
        ),
        Scenario(
            "capacity_drop",
            # The drop comes well inside both sizes (the quick one has ~1,400 requests left at it), so the
            # check never depends on whether the run ends just before or just after the cliff.
            "chain, capacity 64 then 16 from 5 s",
            _one(capacity=64, capacity_schedule="0:64,5:16"),
            chain(64),
            2000,
            1000,
            notes={"schedule": [(0.0, 64), (5.0, 16)]},
        ),
        Scenario(
            "vllm_saturation",
            "chain, vLLM-style (no 429, latency grows past 16 in flight), max_parallel_requests 128",
            _one(mode="vllm", capacity=16),
            chain(128),
            200,
            200,
        ),
        Scenario(
            "rpm_limited",
            "chain, 1200 requests/minute budget",
            _one(capacity=64, rpm=1200),
            chain(64, rpm=1200),
            200,
            100,
            notes={"rpm": 1200},
        ),
        Scenario(
            "fan_out_fan_in",
            "1 sampler -> 4 LLM columns -> 1 LLM column, capacity 32",
            _one(capacity=32),
            fan_out_fan_in,
            500,
            200,
            critical_path_calls=2,
        ),
        Scenario(
            "two_models",
            "capacity 8 and 32, each feeding its own chain",
            (Endpoint("small", sim(capacity=8), ("small",)), Endpoint("big", sim(capacity=32), ("big",))),
            two_models,
            300,
            # The full size in the quick set too: at 200 records (two row groups) the big endpoint's ramp is a
            # large share of its work and its utilisation sat on the guardrail (0.84-0.87 against 0.85).
            300,
            critical_path_calls=2,
        ),
        Scenario(
            "cpu_bottleneck",
            "LLM -> 4 ms CPU column -> LLM, capacity 16",
            _one(capacity=16),
            cpu_bottleneck,
            300,
            200,
            critical_path_calls=2,
        ),
        Scenario(
            "under_admitted_frontier",
            "row groups of 10 starting at a frontier of 1, capacity 64",
            _one(capacity=64),
            under_admitted,
            600,
            400,
        ),
        Scenario(
            "request_pressure",
            "a pressured endpoint (capacity 4) and an open one (32) in one run",
            (Endpoint("tight", sim(capacity=4), ("tight",)), Endpoint("open", sim(capacity=32), ("open",))),
            two_endpoints(("tight", 4), ("open", 32)),
            300,
            200,
            critical_path_calls=2,
        ),
        Scenario(
            "frontier_and_pressure",
            "small row groups starting narrow, plus a pressured and an open endpoint",
            (Endpoint("tight", sim(capacity=4), ("tight",)), Endpoint("open", sim(capacity=32), ("open",))),
            two_endpoints(("tight", 4), ("open", 32), row_group_size=20, initial_row_groups_in_flight=1),
            300,
            None,
            critical_path_calls=2,
        ),
        Scenario(
            "latency_mix",
            "a 1 s model and a 50 ms model, capacity 16 each",
            (
                Endpoint("slow", sim(capacity=16, latency_s=1.0), ("slow",)),
                Endpoint("quick", sim(capacity=16, latency_s=0.05), ("quick",)),
            ),
            two_endpoints(("slow", 16), ("quick", 16)),
            300,
            None,
            critical_path_calls=1,
        ),
        Scenario(
            "hosted_spread_05",
            "chain, capacity 16, max_parallel_requests 64, latency spread lognormal sigma 0.5 (mean 200 ms)",
            _one(capacity=16, **_lognormal(0.5)),
            chain(64),
            300,
            300,
        ),
        Scenario(
            "hosted_spread_10",
            "chain, capacity 16, max_parallel_requests 64, latency spread lognormal sigma 1.0 (mean 200 ms)",
            _one(capacity=16, **_lognormal(1.0)),
            chain(64),
            300,
            300,
        ),
        Scenario(
            "vllm_spread",
            "chain, vLLM-style capacity 16 with lognormal spread sigma 0.5, max_parallel_requests 128",
            _one(mode="vllm", capacity=16, **_lognormal(0.5)),
            chain(128),
            300,
            300,
        ),
        Scenario(
            "mixed_lengths",
            "max_tokens 32 -> 128 -> 512 on one endpoint (capacity 16), latency proportional to reply length",
            (
                Endpoint(
                    "sim",
                    sim(
                        capacity=16, latency_s=0.02, latency_per_token_s=0.002, reply_words_min=20, reply_words_max=600
                    ),
                    ("short", "medium", "long"),
                ),
            ),
            mixed_lengths,
            300,
            300,
        ),
        Scenario(
            "large_overhead",
            "100k records, one LLM column, zero-latency simulator: overhead and memory",
            _one(capacity=64, latency_s=0.0),
            large,
            100_000,
            None,
            critical_path_calls=1,
        ),
        Scenario(
            "memory_2k",
            "2,000 records, row groups of 100, frontier capped at 10 row groups (memory baseline)",
            _one(capacity=64, latency_s=0.0),
            memory,
            2_000,
            None,
            critical_path_calls=1,
        ),
        Scenario(
            "memory_20k",
            "20,000 records, same frontier cap: peak memory must stay flat in the record count",
            _one(capacity=64, latency_s=0.0),
            memory,
            20_000,
            None,
            critical_path_calls=1,
        ),
        Scenario(
            "large_overhead_10k",
            "10k records of the large run, for the memory comparison",
            _one(capacity=64, latency_s=0.0),
            large,
            10_000,
            10_000,
            critical_path_calls=1,
        ),
    ]
}

# The fault and endpoint-pool scenarios live in their own modules, which add them to SCENARIOS when imported.
import rowloom.bench.fault_scenarios  # noqa: E402
import rowloom.bench.pool_scenarios  # noqa: E402, F401
