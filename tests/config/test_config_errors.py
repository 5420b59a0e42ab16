"""Every config error names the field path and the fix; valid configs round-trip through YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rowloom.config import DatasetConfig, LLMStructuredColumn
from rowloom.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}]
MODELS = [{"alias": "m", "provider": "p", "model": "x"}]


def load(columns, **extra) -> DatasetConfig:
    return DatasetConfig.from_dict({"providers": PROVIDERS, "models": MODELS, "columns": columns, **extra})


def problems(columns, **extra) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(columns, **extra)
    return [str(p) for p in info.value.problems]


def test_chain_example_loads_and_round_trips_through_yaml():
    config = DatasetConfig.from_yaml(ROOT / "examples" / "chain.yaml")
    assert [c.name for c in config.columns] == ["topic", "difficulty", "question", "answer", "review"]
    again = DatasetConfig.from_yaml_string(config.to_yaml())
    assert again == config
    assert again.fingerprint() == config.fingerprint()


def test_unknown_reference_names_column_and_known_names():
    [msg] = problems([{"name": "a", "type": "llm_text", "model": "m", "prompt": "{{ nope }}"}])
    assert "columns[0] (a)" in msg and "'nope'" in msg and "define a column" in msg


def test_cycle_is_reported_with_its_path():
    msgs = problems(
        [
            {"name": "a", "type": "llm_text", "model": "m", "prompt": "{{ b }}"},
            {"name": "b", "type": "expression", "expr": "a"},
        ]
    )
    assert any("cycle a -> b -> a" in m or "cycle b -> a -> b" in m for m in msgs)


def test_undefined_model_alias_is_reported_with_known_aliases():
    [msg] = problems([{"name": "a", "type": "llm_text", "model": "ghost", "prompt": "hi"}])
    assert "columns[0] (a).model" in msg and "'ghost'" in msg and "m" in msg


def test_duplicate_column_name_is_reported():
    msgs = problems([{"name": "a", "type": "bernoulli"}, {"name": "a", "type": "uuid"}])
    assert any("columns[1].name" in m and "already used" in m for m in msgs)


def test_undefined_provider_is_reported():
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_dict(
            {
                "providers": PROVIDERS,
                "models": [{"alias": "m", "provider": "nope", "model": "x"}],
                "columns": [{"name": "a", "type": "bernoulli"}],
            }
        )
    assert "models[0] (m).provider" in str(info.value)


def test_unknown_field_and_unknown_type_and_missing_field_each_get_a_fix():
    msgs = problems(
        [
            {"name": "a", "type": "bernoulli", "colour": "red"},
            {"name": "b", "type": "nope"},
            {"name": "c", "type": "llm_text", "model": "m"},
        ]
    )
    text = "\n".join(msgs)
    assert "columns[0] (a).colour" in text and "remove `colour`" in text
    assert "columns[1] (b)" in text and "unknown column type 'nope'" in text and "llm_text" in text
    assert "columns[2] (c).prompt" in text and "add the required field `prompt`" in text


def test_invalid_jinja_and_invalid_schema_and_impossible_range():
    msgs = problems(
        [
            {"name": "a", "type": "llm_text", "model": "m", "prompt": "{{ unclosed"},
            {"name": "b", "type": "llm_structured", "model": "m", "prompt": "x", "schema": {"type": 12}},
            {"name": "c", "type": "uniform", "low": 5, "high": 1},
        ]
    )
    text = "\n".join(msgs)
    assert "columns[0] (a).prompt" in text and "invalid Jinja" in text
    assert "columns[1] (b).schema" in text and "invalid JSON Schema" in text
    assert "columns[2] (c)" in text and "swap them" in text


def test_category_weights_must_match_values():
    [msg] = problems([{"name": "a", "type": "category", "values": [1, 2], "weights": [1]}])
    assert "one weight per value" in msg


def test_invalid_column_name_is_rejected():
    [msg] = problems([{"name": "has space", "type": "uuid"}])
    assert "valid column name" in msg


def test_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  - {name: a, type: uuid\n")
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_yaml(bad)
    assert "bad.yaml:" in str(info.value) and "invalid YAML" in str(info.value)


def test_non_utf8_file_is_rejected_with_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"columns:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_yaml(bad)
    assert "not valid UTF-8" in str(info.value) and "bad.yaml:2" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        DatasetConfig.from_yaml(tmp_path / "missing.yaml")


def test_pydantic_model_is_accepted_as_structured_schema():
    class Review(BaseModel):
        score: int
        reason: str

    column = LLMStructuredColumn(type="llm_structured", name="r", model="m", prompt="x", schema=Review)
    assert column.output_schema["properties"]["score"]["type"] == "integer"


def test_callable_custom_column_cannot_be_saved_but_import_path_can():
    config = load([{"name": "a", "type": "custom", "function": "math:sqrt", "inputs": []}])
    assert "math:sqrt" in config.to_yaml()
    with_callable = load([{"name": "a", "type": "custom", "function": len}])
    with pytest.raises(ConfigError, match="import path"):
        with_callable.to_yaml()


def test_fingerprint_ignores_endpoints_but_not_prompts():
    a = load([{"name": "a", "type": "llm_text", "model": "m", "prompt": "hi"}])
    moved = DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": "http://127.0.0.1:2/v1"}],
            "models": MODELS,
            "columns": [{"name": "a", "type": "llm_text", "model": "m", "prompt": "hi"}],
        }
    )
    changed = load([{"name": "a", "type": "llm_text", "model": "m", "prompt": "hello"}])
    assert a.fingerprint() == moved.fingerprint()
    assert a.fingerprint() != changed.fingerprint()


def test_fingerprint_keeps_the_order_of_a_reply_schema_but_not_of_settings():
    def structured(properties: dict, inference: dict):
        models = [{**MODELS[0], "inference": inference}]
        column = {"name": "r", "type": "llm_structured", "model": "m", "prompt": "grade"}
        column["schema"] = {"type": "object", "properties": properties, "required": list(properties)}
        return DatasetConfig.from_dict({"providers": PROVIDERS, "models": models, "columns": [column]})

    score, reason = {"score": {"type": "integer"}}, {"reason": {"type": "string"}}
    base = structured({**score, **reason}, {"temperature": 0.5, "max_tokens": 9})
    # The struct's field order (and what the model is asked for) follows the properties: a different dataset.
    assert structured({**reason, **score}, {"temperature": 0.5, "max_tokens": 9}).fingerprint() != base.fingerprint()
    assert structured({**score, **reason}, {"max_tokens": 9, "temperature": 0.5}).fingerprint() == base.fingerprint()


@pytest.mark.parametrize("text", ["\x85", "a\u2028b", "x\u2029", "café"])
def test_saved_yaml_reads_back_the_same_text(text):
    # NEL and the Unicode separators are line breaks to YAML: unquoted or single-quoted they would be folded.
    config = load([{"name": "c", "type": "category", "values": [text]}])
    again = DatasetConfig.from_yaml_string(config.to_yaml())
    assert again.columns[0].values == [text] and again.fingerprint() == config.fingerprint()


def test_legacy_throttle_section_gets_one_line_pointing_to_request_admission():
    with pytest.raises(ConfigError) as info:
        load([{"name": "a", "type": "uuid"}], run={"throttle": {"max": 3}})
    assert len(info.value.problems) == 1
    assert "run.throttle" in str(info.value) and "request_admission" in str(info.value)


def test_judge_schema_bounds_its_reasons_so_constrained_decoding_cannot_ramble():
    config = load(
        [
            {
                "name": "j",
                "type": "llm_judge",
                "model": "m",
                "prompt": "x",
                "rubrics": [{"name": "clear", "scores": {1: "no", 2: "yes"}}],
                "reason_max_length": 80,
            }
        ]
    )
    reason = config.columns[0].output_schema["properties"]["clear"]["properties"]["reason"]
    assert reason == {"type": "string", "minLength": 1, "maxLength": 80}  # an empty reason is no reason


POOL_PROVIDERS = [*PROVIDERS, {"name": "q", "base_url": "http://127.0.0.1:2/v1"}]
TEXT = [{"name": "t", "type": "llm_text", "model": "m", "prompt": "hi", "record_endpoint": True}]


def pool_problems(model: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_dict({"providers": POOL_PROVIDERS, "models": [model], "columns": TEXT})
    return [str(p) for p in info.value.problems]


def test_a_pool_is_checked_field_by_field_and_names_the_fix():
    [both] = pool_problems({"alias": "m", "model": "x", "provider": "p", "endpoints": [{"provider": "q"}]})
    assert "models[0] (m)" in both and "not both" in both
    [unknown] = pool_problems({"alias": "m", "model": "x", "endpoints": [{"provider": "p"}, {"provider": "r"}]})
    assert "models[0] (m).endpoints[1].provider" in unknown and "'r' is not defined" in unknown
    [fallbacks] = pool_problems({"alias": "m", "model": "x", "endpoints": [{"provider": "p", "tier": "fallback"}]})
    assert "every endpoint of the pool is a fallback" in fallbacks
    [twice] = pool_problems({"alias": "m", "model": "x", "endpoints": [{"provider": "p"}, {"provider": "p"}]})
    assert "endpoints[1] repeats provider 'p'" in twice
    [spill] = pool_problems({"alias": "m", "model": "x", "provider": "p", "spill_after_s": 3})
    assert "spill_after_s applies only to a pool" in spill


def test_a_pool_config_round_trips_and_warns_when_its_endpoints_serve_different_models():
    from rowloom.config.checks import config_warnings

    model = {"alias": "m", "model": "x", "endpoints": [{"provider": "p"}, {"provider": "q", "model": "y"}]}
    config = DatasetConfig.from_dict({"providers": POOL_PROVIDERS, "models": [model], "columns": TEXT})
    assert DatasetConfig.from_yaml_string(config.to_yaml()) == config
    assert config.columns[0].outputs() == ("t", "t__endpoint")
    [members_a, members_b] = config.models[0].members()
    assert (members_a.model.provider, members_a.model.model) == ("p", "x")
    assert (members_b.model.provider, members_b.model.model) == ("q", "y")
    [warning] = config_warnings(config)
    assert "models[0] (m).endpoints serve different model ids (x, y)" in warning
    same = {**model, "endpoints": [{"provider": "p"}, {"provider": "q"}]}
    assert (
        config_warnings(DatasetConfig.from_dict({"providers": POOL_PROVIDERS, "models": [same], "columns": TEXT})) == []
    )
