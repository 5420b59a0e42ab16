"""The chain example end to end in each API shape the simulator speaks (OpenAI, Anthropic's Messages API, Azure
OpenAI's deployment URLs), with a key in each API's own header, the structured review valid against its schema,
usage in the ledger, and 429/529 storms handled alike."""

from __future__ import annotations

import jsonschema
import pyarrow.parquet as pq
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

from .helpers import chain_dict

KEY = "sk-shape-test-key"
REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}
PROVIDER_TYPES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure_openai"}


def shaped_chain(api: str, base_url: str, **run) -> DatasetConfig:
    data = chain_dict(base_url, row_group_size=20, seed=7, **run)
    provider = data["providers"][0]
    provider.update(type=PROVIDER_TYPES[api], api_key_env="ROWLOOM_SHAPE_KEY")
    if api == "azure":
        data["models"][0]["model"] = "sim-small"  # the deployment's name
    return DatasetConfig.from_dict(data)


@pytest.mark.parametrize("api", ["openai", "anthropic", "azure"])
async def test_the_chain_runs_in_every_api_shape_with_valid_structured_reviews(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ROWLOOM_SHAPE_KEY", KEY)
    sim = SimulatorConfig(api=api, latency_s=0.002, capacity=16, usage_details=True, api_key=KEY, models=("sim-small",))
    async with SimulatorServer(sim) as server:
        result = await run_job(shaped_chain(api, server.base_url), 40, output=tmp_path)
        stats = await server.stats()
    assert result.summary["records_written"] == 40 and result.summary["rows_dropped"] == 0
    assert stats["by_status"] == {"200": 120}  # the key was accepted in the API's own header, every time
    table = pq.read_table(tmp_path / "data").to_pylist()
    for row in table:
        jsonschema.validate(row["review"], REVIEW_SCHEMA)
        assert row["question"] and row["answer"]
    ledger = result.summary["ledger"]["totals"]
    assert (
        ledger["prompt_tokens"] == stats["prompt_tokens"] and ledger["completion_tokens"] == stats["completion_tokens"]
    )
    assert ledger["cached_tokens"] == stats["cached_tokens"] > 0


@pytest.mark.parametrize(("api", "status"), [("openai", 429), ("anthropic", 529), ("anthropic", 429), ("azure", 429)])
async def test_overload_storms_are_retried_to_completion_in_every_shape(api, status, tmp_path, monkeypatch):
    monkeypatch.setenv("ROWLOOM_SHAPE_KEY", KEY)
    # 529s spend a row's attempts as 503s do (429s do not): 8 attempts make losing a row at 20% unlikely (3e-4).
    faults = {"overload_rate": 0.2, "overload_status": 529} if status == 529 else {}
    sim = SimulatorConfig(
        api=api, latency_s=0.005, capacity=4, retry_after_s=0.05, api_key=KEY, models=("sim-small",), **faults
    )
    async with SimulatorServer(sim) as server:
        config = shaped_chain(api, server.base_url, request_admission={"max_attempts": 8})
        config.models[0].max_parallel_requests = 32  # far above the capacity of 4: 429s until the limit is found
        result = await run_job(config, 40, output=tmp_path)
        stats = await server.stats()
    assert result.summary["records_written"] == 40 and result.summary["rows_dropped"] == 0
    assert stats["by_status"].get(str(status), 0) > 0
    outcome = "overloaded" if status == 529 else "rate_limited"
    assert result.summary["requests"]["by_outcome"].get(outcome, 0) == stats["by_status"][str(status)]


async def test_a_wrong_key_is_refused_naming_the_api_header(tmp_path, monkeypatch):
    from rowloom.models.admission.health import EndpointRejected

    monkeypatch.setenv("ROWLOOM_SHAPE_KEY", "wrong")
    async with SimulatorServer(SimulatorConfig(api="anthropic", api_key=KEY, models=("sim-small",))) as server:
        with pytest.raises(EndpointRejected, match=r"401 Unauthorized.*x-api-key"):
            await run_job(shaped_chain("anthropic", server.base_url), 5, output=tmp_path)
