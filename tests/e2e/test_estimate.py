"""`rowloom estimate` against the provider simulator: the dry estimate sends nothing and counts prompts as the
provider does, a sample predicts the full run's tokens, retries and re-asks raise the requests, and the command
prints and writes what it measured. Placeholder replies are valid against the schemas they stand for."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.config.dataset import load_yaml_file
from rowloom.engine.estimate import estimate
from rowloom.engine.estimate.placeholders import SchemaExample, json_placeholder
from rowloom.engine.job import run_job
from rowloom.interface.cli import app

from .helpers import ROOT, chain_dict

pytestmark = pytest.mark.slow

REVIEW_SCHEMA = chain_dict("http://127.0.0.1:1/v1")["columns"][-1]["schema"]


def sim(**settings) -> SimulatorServer:
    return SimulatorServer(SimulatorConfig(latency_s=0.002, capacity=64, models=("sim-small",), seed=1, **settings))


def tokens(stats: dict) -> int:
    return stats["prompt_tokens"] + stats["completion_tokens"]


async def test_dry_estimate_sends_no_request_and_counts_sampler_only_prompts_as_the_provider_reports_them():
    async with sim() as server:
        config = DatasetConfig.from_dict(chain_dict(server.base_url, seed=5))
        result = await estimate(config, 200)
        assert (await server.stats())["requests_total"] == 0
        full = await run_job(config, 200, output=None)
    by_column = full.summary["ledger"]["by_column"]
    question, answer, review = result.columns
    # Only sampler inputs: one exact figure, within 10% of what the provider reported (50 rows scaled to 200).
    assert question.dry.prompt_tokens.low == question.dry.prompt_tokens.high
    reported = by_column["question"]["prompt_tokens"]
    assert abs(question.dry.prompt_tokens.high - reported) <= 0.10 * reported
    # Prompts quoting upstream replies get a range that holds the real count; completions their worst case.
    assert answer.dry.prompt_tokens.low < by_column["answer"]["prompt_tokens"] < answer.dry.prompt_tokens.high
    assert review.dry.prompt_tokens.low < by_column["review"]["prompt_tokens"] < review.dry.prompt_tokens.high
    assert question.dry.completion_tokens.high == 200 * 128  # max_tokens
    assert result.total_dry.requests.high == 600 == full.summary["requests"]["total"]
    assert result.wall_s is None and result.endpoints[0].concurrency_configured == 16
    assert any("--sample" in note for note in result.notes)


async def test_sample_of_ten_rows_predicts_the_full_runs_tokens_within_15_percent():
    # Reply lengths spread over 20-80 words, so ten rows are a real sample of them (a wider spread needs more rows
    # for 15%: docs/estimate.md).
    async with sim(reply_words_min=20, reply_words_max=80) as server:
        config = DatasetConfig.from_dict(chain_dict(server.base_url, seed=7))
        result = await estimate(config, 200, sample=10)
        sampled = await server.stats()
        server.reset()
        await run_job(config, 200, output=None)
        full = await server.stats()
    assert sampled["requests_total"] == 30  # the sample's rows only; the dry passes sent nothing
    predicted = result.total.total_tokens.expected
    assert predicted is not None
    assert abs(predicted - tokens(full)) <= 0.15 * tokens(full), (predicted, tokens(full))
    assert result.total.total_tokens.low <= tokens(full) <= result.total.total_tokens.high
    assert result.total.requests.expected == full["requests_total"] == 600
    # The measured completions replace the worst case, far below it.
    assert result.total.completion_tokens.high < result.total_dry.completion_tokens.high / 2
    [endpoint] = result.endpoints
    assert endpoint.mean_latency_s and endpoint.mean_latency_s > 0 and result.wall_s is not None
    assert result.bottleneck == endpoint.endpoint


async def test_retries_and_reasks_in_the_sample_raise_the_estimated_requests():
    async with sim(error_rate=0.2, schema_invalid_rate=0.4) as server:
        config = DatasetConfig.from_dict(chain_dict(server.base_url, seed=3, max_error_rate=1.0))
        result = await estimate(config, 100, sample=30)
        sampled = await server.stats()
    dry_requests = result.total_dry.requests.high
    assert dry_requests == 300
    # Every attempt the sample paid for is in the estimate, scaled to 100 rows.
    assert result.total.requests.expected == pytest.approx(sampled["requests_total"] * 100 / 30)
    assert result.total.requests.expected > 1.2 * dry_requests
    review = next(c for c in result.columns if c.column == "review")
    question = next(c for c in result.columns if c.column == "question")
    assert review.best.requests.expected > question.best.requests.expected  # re-asks come on top of retries


async def test_a_sample_asks_the_provider_even_when_the_reply_cache_holds_its_rows(tmp_path):
    data = chain_dict("http://127.0.0.1:1/v1", seed=4)
    data["run"]["cache"] = {"mode": "readwrite", "path": str(tmp_path / "cache")}
    async with sim() as server:
        data["providers"][0]["base_url"] = server.base_url
        config = DatasetConfig.from_dict(data)
        await run_job(config, 5, output=None)  # fills the cache with the five rows the sample will ask for
        server.reset()
        result = await estimate(config, 50, sample=5)
        stats = await server.stats()
    assert stats["requests_total"] == 15  # every request of the sample went to the provider
    assert result.total.total_tokens.expected == pytest.approx(tokens(stats) * 50 / 5)


async def test_costs_are_a_range_in_the_pricing_currency_when_every_model_has_prices():
    data = chain_dict("http://127.0.0.1:1/v1", seed=1)
    data["models"][0]["pricing"] = {"input_per_mtok": 1.0, "output_per_mtok": 4.0, "currency": "EUR"}
    async with sim() as server:
        data["providers"][0]["base_url"] = server.base_url
        result = await estimate(DatasetConfig.from_dict(data), 100, rows=20)
    total = result.total_dry
    assert result.currency == "EUR"
    assert total.cost is not None
    assert total.cost.high == pytest.approx((total.prompt_tokens.high + 4 * total.completion_tokens.high) / 1e6)
    assert total.cost.low == pytest.approx((total.prompt_tokens.low + 4 * total.completion_tokens.low) / 1e6)


@pytest.mark.parametrize(
    "schema",
    [
        REVIEW_SCHEMA,
        DatasetConfig.from_dict(load_yaml_file(ROOT / "examples" / "quickstart.yaml")).columns[3].output_schema,
        DatasetConfig.from_dict(load_yaml_file(ROOT / "examples" / "quickstart.yaml")).columns[4].output_schema,
        {
            "type": "object",
            "$defs": {"tag": {"type": "string", "minLength": 2, "maxLength": 5}},
            "properties": {
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1, "maxItems": 4},
                "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "kind": {"anyOf": [{"const": "a"}, {"type": "integer"}]},
                "flag": {"type": ["boolean", "null"]},
                "note": {"type": "string"},
            },
            "required": ["tags", "ratio"],
        },
    ],
    ids=["chain-review", "quickstart-triage", "quickstart-judge", "keywords"],
)
def test_placeholders_are_valid_against_their_schema_and_the_full_one_is_the_longer(schema):
    short = json.loads(json_placeholder(schema, full=False, tokens=64))
    long = json.loads(json_placeholder(schema, full=True, tokens=64))
    jsonschema.validate(short, schema)
    jsonschema.validate(long, schema)
    assert len(json.dumps(long)) >= len(json.dumps(short))
    assert len(json.dumps(long)) <= 64 * 4 or long == SchemaExample(schema).value(schema, full=True)


def test_full_placeholder_fills_strings_up_to_the_reply_length():
    text = json_placeholder(REVIEW_SCHEMA, full=True, tokens=100)
    assert 380 <= len(text) <= 400


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_prints_the_table_and_writes_json_without_sending_a_request(tmp_path):
    with SimulatorProcess(SimulatorConfig(latency_s=0.002, models=("sim-small",))) as server:
        config = tmp_path / "chain.yaml"
        config.write_text(yaml.safe_dump(chain_dict(server.base_url, seed=2)))
        code, output = invoke("estimate", str(config), "-n", "1000", "--json", str(tmp_path / "e.json"))
        assert server.stats()["requests_total"] == 0
        sample_code, sample_output = invoke("estimate", str(config), "-n", "1000", "--sample", "5", "--rows", "5")
        assert server.stats()["requests_total"] == 15
    assert code == 0, output
    assert "| question | writer | 1,000 |" in output
    assert "no prices: tokens only" in output and "approximation" in output
    assert "wall time needs a measured latency" in output
    document = json.loads((tmp_path / "e.json").read_text())
    assert document["records"] == 1000 and document["rows_rendered"] == 50
    assert document["total"]["dry"]["completion_tokens"]["high"] == 3000 * 128
    assert sample_code == 0, sample_output
    assert "expected wall time" in sample_output and "5 real rows sampled" in sample_output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "0"], "error: -n/--num-records must be at least 1 (got 0)"),
        (["-n", "10", "--sample", "11"], "error: --sample 11 is more than -n 10"),
        (["-n", "10", "--rows", "20"], "error: --rows must be between 1 and -n (10) (got 20)"),
    ],
)
def test_cli_rejects_numbers_it_cannot_estimate_with_one_error_line(tmp_path, args, message):
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(chain_dict("http://127.0.0.1:1/v1")))
    code, output = invoke("estimate", str(config), *args)
    assert code == 1
    [line] = [line for line in output.splitlines() if line.startswith("error: ")]
    assert line.startswith(message)
