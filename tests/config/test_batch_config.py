"""`execution: batch` and its `batch:` settings: defaults, sizes in words, and an error naming the field and the fix
for every config batch execution cannot serve (another provider type, a pool, an embedding column, settings
without batch execution, a remote output); batch prices from a discount or explicit."""

from __future__ import annotations

import asyncio

import pytest

from rowloom.config import DatasetConfig
from rowloom.config.pricing import Pricing
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError

TEXT = {"name": "t", "type": "llm_text", "model": "b", "prompt": "Say hi."}


def config(model: dict | None = None, *, provider: dict | None = None, columns: list | None = None) -> DatasetConfig:
    return DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1", **(provider or {})}],
            "models": [{"alias": "b", "provider": "p", "model": "x", "execution": "batch", **(model or {})}],
            "columns": columns or [TEXT],
        }
    )


def problems(*args, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(*args, **kwargs)
    return [str(p) for p in info.value.problems]


def test_batch_settings_default_and_read_sizes_in_words():
    model = config().models[0]
    assert model.batch_settings.max_requests == 50_000 and model.batch_settings.max_bytes == 200_000_000
    sized = config({"batch": {"max_bytes": "50MiB", "flush_after_s": 5}}).models[0].batch_settings
    assert sized.max_bytes == 50 * 2**20 and sized.flush_after_s == 5


@pytest.mark.parametrize(
    ("model", "field", "fix"),
    [
        ({"batch": {"max_bytes": "300MB"}}, "batch.max_bytes", "200MB"),
        ({"batch": {"max_bytes": "lots"}}, "batch.max_bytes", ""),
        ({"batch": {"max_requests": 60_000}}, "batch.max_requests", ""),
        ({"batch": {"completion_window": "soon"}}, "batch.completion_window", "24h"),
        ({"batch": {"poll_min_s": 90}}, "batch", "swap them"),
        ({"execution": "online", "batch": {"flush_after_s": 1}}, "models[0] (b)", "execution: batch"),
    ],
)
def test_bad_batch_settings_name_the_field_and_the_fix(model, field, fix):
    [message] = problems(model)
    assert field in message and fix in message


def test_batch_on_a_pool_is_refused_with_the_fix():
    data = {"provider": None, "endpoints": [{"provider": "p"}]}
    [message] = problems(data)
    assert "not a pool" in message and "set `provider`" in message


def test_batch_on_an_anthropic_provider_is_refused_with_the_fix():
    found = problems({"inference": {"max_tokens": 10}}, provider={"type": "anthropic"})
    assert any("models[0] (b).execution" in m and "type openai" in m for m in found)


def test_an_embedding_column_on_a_batch_model_is_refused_with_the_fix():
    [message] = problems(columns=[{"name": "e", "type": "embedding", "model": "b", "input": "{{ 'x' }}"}])
    assert "columns[0] (e).model" in message and "execution: online" in message


def test_a_batch_model_needs_a_local_output_folder():
    with pytest.raises(ConfigError) as info:
        asyncio.run(run_job(config(), 1, output="s3://bucket/out?endpoint_override=127.0.0.1:1&scheme=http"))
    [problem] = info.value.problems
    assert "models[0] (b).execution" in str(problem) and "local output" in str(problem)


def test_batch_prices_come_from_a_discount_or_explicit_prices():
    discounted = Pricing(input_per_mtok=2, output_per_mtok=8, cached_input_per_mtok=1, batch_discount=0.5)
    assert discounted.for_batch().cost(1_000_000, 1_000_000, 500_000) == pytest.approx(0.5 * 0.5 + 0.5 + 4)
    explicit = Pricing(input_per_mtok=2, output_per_mtok=8, batch_input_per_mtok=1.5, batch_output_per_mtok=5)
    assert explicit.for_batch().cost(1_000_000, 1_000_000) == pytest.approx(6.5)
    assert Pricing(input_per_mtok=2, output_per_mtok=8).for_batch().cost(1_000_000, 0) == 2  # never below the price
    with pytest.raises(ValueError, match="not both"):
        Pricing(
            input_per_mtok=2, output_per_mtok=8, batch_discount=0.5, batch_input_per_mtok=1, batch_output_per_mtok=1
        )
    with pytest.raises(ValueError, match="both"):
        Pricing(input_per_mtok=2, output_per_mtok=8, batch_input_per_mtok=1)


def test_the_ray_executor_refuses_a_batch_model_with_the_fix(tmp_path):
    from rowloom.engine.distributed.ray_executor import run_distributed

    with pytest.raises(ConfigError) as info:
        run_distributed(config(), 1, output=tmp_path / "out")
    [problem] = info.value.problems
    assert "models[0] (b).execution" in str(problem) and "without --executor ray" in str(problem)
    assert not (tmp_path / "out").exists()
