"""`rowloom.DatasetBuilder` builds the same `DatasetConfig` as YAML, and round-trips through YAML."""

from __future__ import annotations

import pytest

import rowloom
from rowloom.config import DatasetConfig, LLMTextColumn
from rowloom.errors import ConfigError

from .helpers import docs_table, write_seed

YAML = """
providers:
  - {name: local, base_url: "http://127.0.0.1:8000/v1"}
models:
  - {alias: writer, provider: local, model: small, inference: {temperature: 0.2}}
  - {alias: embedder, provider: local, model: embed}
seed: {path: SEED, sampling: shuffle, seed: 3, partition: {index: 0, count: 2}}
columns:
  - {name: summary, type: llm_text, model: writer, prompt: "Summarise: {{ text }}", skip_when: "text | length < 20"}
  - {name: sql, type: llm_code, model: writer, language: sql, validate: true, prompt: "SQL for {{ summary }}",
     validation: {sql_dialect: postgres}}
  - {name: vec, type: embedding, model: embedder, input: "{{ summary }}", batch_size: 16}
  - {name: ok, type: validation, language: sql, target: sql, propagate_skip: false}
processors:
  - type: schema_transform
    keep: [doc_id]
    fields:
      messages:
        - {role: user, content: "{{ text }}"}
        - {role: assistant, content: "{{ summary }}"}
export: {path: train.jsonl}
run: {row_group_size: 50, seed: 11}
"""


def built(seed_path: str) -> DatasetConfig:
    return (
        rowloom.DatasetBuilder(
            providers=[{"name": "local", "base_url": "http://127.0.0.1:8000/v1"}],
            models=[{"alias": "writer", "provider": "local", "model": "small", "inference": {"temperature": 0.2}}],
        )
        .add_model(alias="embedder", provider="local", model="embed")
        .with_seed(seed_path, sampling="shuffle", seed=3, partition={"index": 0, "count": 2})
        .add_column(
            LLMTextColumn(
                name="summary",
                type="llm_text",
                model="writer",
                prompt="Summarise: {{ text }}",
                skip_when="text | length < 20",
            )
        )
        .add_column(
            "sql",
            "llm_code",
            model="writer",
            language="sql",
            validate=True,
            prompt="SQL for {{ summary }}",
            validation={"sql_dialect": "postgres"},
        )
        .add_column(
            {"name": "vec", "type": "embedding", "model": "embedder", "input": "{{ summary }}", "batch_size": 16}
        )
        .add_column("ok", "validation", language="sql", target="sql", propagate_skip=False)
        .add_processor(
            type="schema_transform",
            keep=["doc_id"],
            fields={
                "messages": [
                    {"role": "user", "content": "{{ text }}"},
                    {"role": "assistant", "content": "{{ summary }}"},
                ]
            },
        )
        .with_export(path="train.jsonl")
        .with_run(row_group_size=50)
        .with_run(seed=11)
        .build()
    )


def test_builder_equals_yaml_and_round_trips(tmp_path):
    seed = str(write_seed(docs_table(10), tmp_path / "docs.parquet"))
    config = built(seed)
    assert config == DatasetConfig.from_yaml_string(YAML.replace("SEED", seed))
    text = config.to_yaml()
    again = DatasetConfig.from_yaml_string(text)
    assert again == config
    assert again.fingerprint() == config.fingerprint()
    assert again.to_yaml() == text
    assert "validate: true" in text and "skip_when:" in text and "seed:" in text


def test_builder_reports_every_problem_with_paths(tmp_path):
    builder = rowloom.DatasetBuilder().add_column("a", "llm_text", model="m").add_column("b", "nope")
    with pytest.raises(ConfigError) as info:
        builder.build()
    paths = [p.path for p in info.value.problems]
    assert "columns[0] (a).prompt" in paths and "columns[1] (b)" in paths[-1]
    with pytest.raises(ConfigError, match="add at least one"):
        rowloom.DatasetBuilder().build()
    with pytest.raises(ConfigError, match=r"seed\.path"):
        rowloom.DatasetBuilder().with_seed(tmp_path / "missing.csv").add_column("x", "expression", expr="1").build()
