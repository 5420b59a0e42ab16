"""`type: local` providers: their fields, defaults and the errors that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from rowloom.config import DatasetConfig
from rowloom.config.columns import LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn
from rowloom.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = [{"name": "a", "type": "llm_text", "model": "m", "prompt": "hi"}]
MODELS = [{"alias": "m", "provider": "p", "model": "x"}]


def load(provider: dict) -> DatasetConfig:
    return DatasetConfig.from_dict({"providers": [provider], "models": MODELS, "columns": COLUMNS})


def problems(provider: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(provider)
    return [str(p) for p in info.value.problems]


def test_local_provider_needs_no_url_and_has_small_machine_defaults():
    provider = load({"name": "p", "type": "local"}).providers[0]
    assert provider.base_url is None
    assert provider.model_path is None  # = the packaged SmolLM2 file, resolved when the run starts
    assert (provider.parallel_slots, provider.context_size, provider.threads, provider.port) == (4, 2048, None, None)
    assert provider.startup_timeout_s > 0


def test_local_provider_ceiling_defaults_to_twice_its_slots_and_openai_keeps_the_global_default():
    assert load({"name": "p", "type": "local", "parallel_slots": 3}).providers[0].default_max_parallel_requests() == 6
    openai = load({"name": "p", "base_url": "http://127.0.0.1:1/v1"}).providers[0]
    assert openai.type == "openai" and openai.default_max_parallel_requests() is None


def test_local_provider_with_base_url_is_rejected_naming_the_field():
    [msg] = problems({"name": "p", "type": "local", "base_url": "http://127.0.0.1:8000/v1"})
    assert msg.startswith("providers[0] (p).base_url:") and "remove base_url" in msg


def test_openai_provider_without_base_url_names_the_field_and_both_fixes():
    [msg] = problems({"name": "p"})
    assert msg.startswith("providers[0] (p).base_url:")
    assert "required for a provider of type openai" in msg and "type: local" in msg


@pytest.mark.parametrize(
    "field, value",
    [("model_path", "m.gguf"), ("parallel_slots", 2), ("context_size", 512), ("threads", 1), ("port", 8080)],
)
def test_local_only_fields_on_an_openai_provider_are_rejected(field, value):
    [msg] = problems({"name": "p", "base_url": "http://127.0.0.1:1/v1", field: value})
    assert msg.startswith(f"providers[0] (p).{field}:") and "only to `type: local`" in msg


@pytest.mark.parametrize(
    "field, value",
    [("parallel_slots", 0), ("context_size", 16), ("threads", 0), ("port", 70000), ("startup_timeout_s", 0)],
)
def test_out_of_range_local_fields_name_the_field(field, value):
    [msg] = problems({"name": "p", "type": "local", field: value})
    assert msg.startswith(f"providers[0] (p).{field}:")


def test_unknown_provider_type_lists_the_known_ones():
    msgs = problems({"name": "p", "type": "vllm"})
    assert any(
        m.startswith("providers[0] (p).type:") and "'openai', 'anthropic', 'azure_openai' or 'local'" in m for m in msgs
    )


def test_local_provider_round_trips_through_yaml_without_defaults():
    config = load({"name": "p", "type": "local", "parallel_slots": 2, "model_path": "~/models/x.gguf"})
    assert config.to_dict()["providers"] == [
        {"name": "p", "type": "local", "model_path": "~/models/x.gguf", "parallel_slots": 2}
    ]
    assert DatasetConfig.from_yaml_string(config.to_yaml()) == config


def test_chain_example_still_loads_as_an_openai_provider():
    provider = DatasetConfig.from_yaml(ROOT / "examples" / "chain.yaml").providers[0]
    assert (provider.type, provider.base_url) == ("openai", "http://127.0.0.1:18080/v1")


def test_quickstart_uses_the_local_provider_with_text_structured_and_judge_columns():
    config = DatasetConfig.from_yaml(ROOT / "examples" / "quickstart.yaml")
    assert [p.type for p in config.providers] == ["local"]
    kinds = {type(c) for c in config.columns}
    assert {LLMTextColumn, LLMStructuredColumn, LLMJudgeColumn} <= kinds
    assert all(m.inference.max_tokens is not None and m.inference.max_tokens <= 160 for m in config.models)
