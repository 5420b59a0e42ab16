"""Fuzzing the config loader: any input loads or fails with a `ConfigError` whose problems name a path and say why.

Configs start structurally plausible (every column type, references between columns, providers, models, run
settings) and are then mutated: wrong types, deleted keys, unknown keys, random template text, random JSON
Schemas, unknown references. Raw YAML text and raw bytes go through the file loader too.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rowloom.config import DatasetConfig
from rowloom.config.columns import COLUMN_TYPES
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError

# Together these tests generate 750 configs (250 + 150 + 150 + 100 + 100); the suite asks for at least 500.
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROVIDER = {"name": "p", "base_url": "http://127.0.0.1:9/v1"}
MODEL = {"alias": "m", "provider": "p", "model": "x", "inference": {"temperature": 0.5}}
SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["score"],
}


def column_body(kind: str, ref: str | None) -> dict[str, Any]:
    """Valid fields for a column of `kind`, reading `ref` where the kind reads another column."""
    ref_expr = ref or "1"
    ref_tpl = "{{ " + ref + " }}" if ref else "plain"
    return {
        "category": {"values": ["a", "b", 3], "weights": [1, 2, 0.5]},
        "subcategory": {"category": ref or "nope", "values": {"a": ["x", "y"], "b": ["z"]}},
        "uniform": {"low": 0, "high": 5, "integer": True},
        "gaussian": {"mean": 0, "stddev": 1, "low": -1, "high": 1},
        "bernoulli": {"p": 0.3},
        "uuid": {},
        "datetime": {"start": "2024-01-01T00:00:00", "end": "2024-02-01T00:00:00", "unit": "h"},
        "llm_text": {"model": "m", "prompt": f"Say {ref_tpl}", "system_prompt": "Be brief."},
        "llm_structured": {"model": "m", "prompt": f"Rate {ref_tpl}", "schema": copy.deepcopy(SCHEMA)},
        "llm_judge": {"model": "m", "prompt": f"Judge {ref_tpl}", "rubrics": [{"name": "q", "scores": {1: "bad"}}]},
        "expression": {"expr": f"{ref_expr} ~ '!'", "dtype": "string"},
        "custom": {"function": "math:sqrt", "inputs": [ref] if ref else [], "dtype": "float"},
        "llm_code": {"model": "m", "prompt": f"Code for {ref_tpl}", "language": "python"},
        "validation": {"language": "python", "target": ref or "nope"},
        "embedding": {"model": "m", "input": ref_tpl},
    }.get(kind, {"anything": 1})


@st.composite
def plausible_configs(draw) -> dict[str, Any]:
    """A config that is valid or nearly so: 1-5 columns, each possibly reading an earlier one."""
    count = draw(st.integers(1, 5))
    columns = []
    for i in range(count):
        kind = draw(st.sampled_from(COLUMN_TYPES))
        ref = f"c{draw(st.integers(0, i - 1))}" if i and draw(st.booleans()) else None
        columns.append({"name": f"c{i}", "type": kind, **column_body(kind, ref)})
    config: dict[str, Any] = {"providers": [dict(PROVIDER)], "models": [copy.deepcopy(MODEL)], "columns": columns}
    if draw(st.booleans()):
        config["run"] = {"row_group_size": draw(st.integers(1, 500)), "seed": draw(st.integers(0, 2**31))}
    return config


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
JINJA_PIECES = [
    "{{", "}}", "{%", "%}", "{#", "#}", " ", "c0", "c1", "c9", ".", "|", "upper", "(", ")", "'", '"', "for", "in",
    "endfor", "if", "endif", "x", "1", "*", "**", "+", "~", "range", "lipsum", "self", "cycler", "attr",
    "__class__", "__init__", "__globals__", "[", "]", ",", "set", "=", "\n", "é", "\x00", "raw", "endraw",
]  # fmt: skip
templates = st.lists(st.sampled_from(JINJA_PIECES), max_size=15).map("".join) | st.text(max_size=30)
SCHEMA_KEYWORDS = [
    "type", "properties", "required", "items", "enum", "minimum", "maximum", "pattern", "$ref", "anyOf",
    "additionalProperties", "format", "const", "$defs", "minItems", "not",
]  # fmt: skip
schemas = st.recursive(
    st.sampled_from(["object", "string", "integer", "array", "nope", 12, None, True]),
    lambda inner: st.dictionaries(st.sampled_from(SCHEMA_KEYWORDS), inner | st.lists(inner, max_size=3), max_size=4),
    max_leaves=10,
)


def _locations(node: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) in a nested dict/list."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*path, key))
            out += _locations(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*path, i))
            out += _locations(value, (*path, i))
    return out


def _parent(root: Any, path: tuple) -> Any:
    node = root
    for key in path[:-1]:
        node = node[key]
    return node


# Targeted mutations are listed more than once so that about a third of the configs still load.
OPS = ["value", "delete", "unknown_key", "template", "template", "schema", "schema", "reference", "reference", "type"]


@st.composite
def mutated_configs(draw) -> dict[str, Any]:
    """A plausible config with 1-4 random mutations applied."""
    config = draw(plausible_configs())
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        places = _locations(config)
        path = draw(st.sampled_from(places))
        parent = _parent(config, path)
        key = path[-1]
        op = draw(st.sampled_from(OPS))
        if op == "value":
            parent[key] = draw(json_values)
        elif op == "delete":
            del parent[key]
        elif op == "unknown_key":
            target = parent if isinstance(parent, dict) else config
            target[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
        elif op in ("template", "schema", "reference", "type"):
            columns = config.get("columns") if isinstance(config, dict) else None
            column = draw(st.sampled_from(columns)) if isinstance(columns, list) and columns else None
            if not isinstance(column, dict):
                continue
            # Change a field the column has, so the mutation tests that field rather than `extra="forbid"`.
            if op == "template":
                fields = [f for f in ("prompt", "system_prompt", "expr", "input", "skip_when") if f in column]
                column[draw(st.sampled_from(fields or ["skip_when"]))] = draw(templates)
            elif op == "schema":
                column.clear()
                column.update(name=f"s{len(columns)}", type="llm_structured", model="m", prompt="Rate it")
                column["schema"] = draw(schemas)
            elif op == "reference":
                fields = [f for f in ("inputs", "expr", "category", "target") if f in column] or ["skip_when"]
                field = draw(st.sampled_from(fields))
                name = draw(st.sampled_from(["c0", "c1", "c4", "ghost", str(column.get("name", "x"))]))
                column[field] = [name] if field == "inputs" else name
            else:
                column["type"] = draw(st.sampled_from([*COLUMN_TYPES, "nope", 3, None]))
        if not isinstance(config, dict):
            break
    return config


def check_loads_or_config_error(load) -> DatasetConfig | None:
    """Run `load`; it may only succeed or raise `ConfigError` with complete problems."""
    try:
        config = load()
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.path.strip(), f"problem without a path: {problem!r}"
            assert problem.message.strip(), f"problem without a message: {problem!r}"
        return None
    # A config that loads can be identified, saved and read back.
    config.fingerprint()
    again = DatasetConfig.from_yaml_string(config.to_yaml())
    assert again.fingerprint() == config.fingerprint()
    return config


@FUZZ
@given(mutated_configs())
def test_mutated_configs_load_or_raise_config_error_with_paths(data):
    loaded = check_loads_or_config_error(lambda: DatasetConfig.from_dict(data))
    event("loaded" if loaded is not None else "config error")


@settings(FUZZ, max_examples=150)
@given(plausible_configs())
def test_plausible_configs_without_mutation_load(data):
    assert check_loads_or_config_error(lambda: DatasetConfig.from_dict(data)) is not None or _has_seedless_ref(data)


def _has_seedless_ref(data: dict[str, Any]) -> bool:
    # A subcategory/validation column with no earlier column to read names a column that does not exist.
    return any(c.get("category") == "nope" or c.get("target") == "nope" for c in data["columns"])


@settings(FUZZ, max_examples=150)
@given(mutated_configs(), st.sampled_from(["dump", "cut", "splice"]), st.integers(0, 10_000), st.text(max_size=20))
def test_yaml_text_through_the_file_loader(tmp_path_factory, data, how, at, junk):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if how == "cut":
        text = text[: at % (len(text) + 1)]
    elif how == "splice":
        i = at % (len(text) + 1)
        text = text[:i] + junk + text[i:]
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    check_loads_or_config_error(lambda: DatasetConfig.from_yaml(path))


@pytest.mark.parametrize("key", ["\r", " ", "", "a\tb", " run"])
@pytest.mark.parametrize("where", ["top", "column"])
def test_blank_or_unprintable_keys_are_named_visibly(key, where):
    # Found by the fuzz above: a key of "\r" made a problem whose path printed as nothing.
    data = {
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
        "columns": [{"name": "c0", "type": "category", "values": ["a", "b"]}],
    }
    (data if where == "top" else data["columns"][0])[key] = None
    with pytest.raises(ConfigError) as caught:
        DatasetConfig.from_dict(data)
    assert any(repr(key) in problem.path for problem in caught.value.problems), caught.value.problems
    check_loads_or_config_error(lambda: DatasetConfig.from_dict(data))


@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_raw_bytes_through_the_file_loader(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_bytes(raw)
    check_loads_or_config_error(lambda: DatasetConfig.from_yaml(path))


wild_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e308, -1e308, 2**63, 2**63 - 1, 5e-324]),
)


@st.composite
def sampler_configs(draw) -> dict[str, Any]:
    """Sampler columns with wild numeric parameters, plus an expression over them."""
    columns: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["uniform", "gaussian", "category", "bernoulli", "datetime"]))
        column: dict[str, Any] = {"name": f"c{i}", "type": kind}
        if kind in ("uniform", "gaussian"):
            keys = ["low", "high"] if kind == "uniform" else ["mean", "stddev", "low", "high"]
            column.update({k: draw(wild_numbers) for k in keys if kind == "uniform" or draw(st.booleans())})
            column["integer"] = draw(st.booleans())
        elif kind == "category":
            values = draw(st.lists(st.integers(-5, 5) | st.text(max_size=3), min_size=1, max_size=4))
            column["values"] = values
            if draw(st.booleans()):
                column["weights"] = draw(st.lists(wild_numbers, min_size=len(values), max_size=len(values)))
        elif kind == "bernoulli":
            column["p"] = draw(wild_numbers)
        else:
            column["start"] = draw(st.datetimes()).isoformat()
            column["end"] = draw(st.datetimes()).isoformat()
        columns.append(column)
    columns.append({"name": "e", "type": "expression", "expr": "c0 ~ ''"})
    return {"columns": columns, "run": {"seed": draw(st.integers(0, 2**63)), "row_group_size": 5}}


@settings(FUZZ, max_examples=100)
@given(sampler_configs())
def test_sampler_configs_that_load_also_generate(data):
    """An accepted config must not crash the engine: impossible ranges are config errors, not run-time bugs."""
    config = check_loads_or_config_error(lambda: DatasetConfig.from_dict(data))
    event("loaded" if config is not None else "config error")
    if config is None:
        return
    result = asyncio.run(run_job(config, 7, output=None))
    frame = result.to_pandas()
    assert len(frame) == 7
    assert frame["c0"].notna().all()
