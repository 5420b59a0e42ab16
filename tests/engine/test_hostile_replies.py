"""A model's reply is data: whatever it holds, every parser and validator that reads it ends in a value or a
dropped row with its reason (`CellFailed`), never another exception — the kind that would fail the run.

Hypothesis throws 1,000 hostile replies per run (deep nesting, huge sizes and numbers, NaN/Infinity, invalid
UTF-8, control characters, fences) at the reply parsers, the code validators, dtype coercion and the HTTP reply
classifiers (OpenAI's and Anthropic's), calling them directly so the run takes seconds. Templates that compute
with such values (expressions, prompts, skip conditions) drop the row too.
"""

from __future__ import annotations

import asyncio

import jsonschema
import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowloom.config import DatasetConfig
from rowloom.config.columns import CodeValidation
from rowloom.config.templates import compile_template
from rowloom.engine.arrow_schema import schema_type, to_arrow_value
from rowloom.engine.generators.base import BatchContext, CellFailed, FailedCell
from rowloom.engine.generators.code import extract_code, parse_code, validate_code
from rowloom.engine.generators.expression import ExpressionGenerator
from rowloom.engine.generators.llm import read_structured
from rowloom.engine.generators.render import TEMPLATE_ERROR, render
from rowloom.engine.generators.replies import UNREADABLE_REPLY, read_reply, storable
from rowloom.engine.generators.skip import SkipAware
from rowloom.engine.generators.values import coerce
from rowloom.engine.job import run_job
from rowloom.engine.plan import build_plan
from rowloom.engine.skips import SKIPPED
from rowloom.errors import ConfigError, TemplateError
from rowloom.models.clients.anthropic import classify_messages_response
from rowloom.models.clients.openai import (
    classify_chat_response,
    classify_embedding_response,
    classify_status,
)
from rowloom.models.types import ChatResponse, EmbeddingResponse, ProviderError

SCHEMAS = [
    {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}, "s": {"type": "string"}}},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}, "free": {}}},
    {"type": "array", "items": {"type": "number"}},
    {},  # anything: stored as JSON text
]
VALIDATORS = [(jsonschema.Draft202012Validator(s), schema_type(s, s)) for s in SCHEMAS]
SETTINGS = CodeValidation(ruff_rules=[])
SQL_CHARS = 300

# ------------------------------------------------------------------ hostile replies

# ("lambda: " * 3000 takes Python's compile() seconds: bounded by the validator's timeout, too slow to fuzz.)
OPENERS = ["[", "{", "(", '{"a":', "[[{", "SELECT (", "f(", "-", "not ", "lambda:(", "x if ", '"', "```\n", "`"]
CLOSERS = ["]", "}", ")", "}]]", "))", ""]
NUMBERS = [
    "1.0e999",
    "-1e999",
    "1e-999",
    "NaN",
    "-Infinity",
    "Infinity",
    "1e308",
    "9223372036854775808",
    "-9223372036854775809",
    str(10**300),
    "0x7fffffffffffffffffff",
    "1_000",
    "١٢٣",  # Arabic-Indic digits: int() reads them, JSON does not
]


@st.composite
def nested(draw) -> str:
    depth = draw(st.integers(1, 3_000))
    opener = draw(st.sampled_from(OPENERS))
    closer = draw(st.sampled_from(CLOSERS))
    core = draw(st.sampled_from(["1", "", '"a"', "null", *NUMBERS[:3]]))
    balanced = draw(st.booleans())
    return opener * depth + core + (closer * depth if balanced else "")


@st.composite
def huge_number(draw) -> str:
    digits = draw(st.integers(1, 20_000))
    sign = draw(st.sampled_from(["", "-"]))
    number = sign + "9" * digits + draw(st.sampled_from(["", ".5", "e999", "e-999"]))
    return draw(st.sampled_from([number, f'{{"n": {number}}}', f"[{number}]", f"SELECT {number}"]))


@st.composite
def bad_encoding(draw) -> str:
    raw = draw(st.binary(max_size=200)) + draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
    text = raw.decode("utf-8", errors="surrogateescape")  # invalid bytes become lone surrogates
    return draw(st.sampled_from([text, f'{{"s": "{text}"}}', '{"s": "\\ud800"}', '["\\udfff"]', "\ufeff" + text]))


@st.composite
def large(draw) -> str:
    chunk = draw(st.sampled_from(["a", "[1,", "(", "SELECT 1;", "\n", "```", "x=1\n", '{"a":[', "\\", "\x1b[2J"]))
    return chunk * draw(st.integers(500, 3_000))


@st.composite
def fenced(draw, inner) -> str:
    tag = draw(st.sampled_from(["", "json", "python", "sql", "js", "~~~"]))
    fence = "~~~" if tag == "~~~" else "```" + tag
    return f"Here you go:\n{fence}\n{draw(inner)}\n{draw(st.sampled_from(['```', '~~~', '']))}"


REPLY = st.one_of(
    nested(),
    huge_number(),
    bad_encoding(),
    large(),
    st.sampled_from(NUMBERS),
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cs", "Zl", "Zp", "So"]), max_size=100),
)
HOSTILE = st.one_of(REPLY, fenced(REPLY))


# ------------------------------------------------------------------ what each reader may do


def read_or_drop(what: str, read, *args):
    """What the generators do: the value, or a dropped row with a reason and detail. Anything else fails."""
    try:
        return read_reply(what, read, *args)
    except CellFailed as failed:
        assert failed.reason == UNREADABLE_REPLY and failed.detail.startswith(what)
        return None


def check_generators(text: str) -> None:
    read_or_drop("text", storable, text.strip(), pa.string())
    for validator, dtype in VALIDATORS:
        result = read_or_drop("structured", read_structured, text, validator, dtype)
        if result is not None:
            value, problem = result
            assert (problem is None) or (value is None and isinstance(problem, str))
    for language in ("python", "json", "sql"):
        code = read_or_drop("extract", extract_code, text, language)
        if code is None or not code.strip():
            continue
        if language == "sql":
            # sqlglot reads ~25 KB/s: nesting and content are fuzzed here, size by the 1 MB test below (whose
            # SQL is cut the same way: a long SQL reply is bounded by the validator's timeout, not by its size).
            code = code[:SQL_CHARS]
        # What `validate_code` runs in its worker thread (the event loop around it is pinned below).
        problems = read_or_drop(f"the {language} validator", parse_code, language, code, SETTINGS)
        assert problems is None or all(isinstance(p, str) for p in problems)
    for dtype in ("string", "int", "float", "bool", "json"):
        read_or_drop("coerce", coerce, text, dtype, "c")


def check_http_classifiers(text: str) -> None:
    bodies = [
        orjson.dumps({"choices": [{"message": {"content": text}}]}) if _encodable(text) else b"",
        text.encode("utf-8", errors="surrogateescape"),
        b'{"choices": [{"message": {"content": [{"text": 1}, {"text": null}, "x"]}}]}',
        b'{"data": [{"embedding": "' + text.encode("utf-8", errors="surrogateescape")[:100] + b'"}]}',
    ]
    for body in bodies:
        chat = classify_chat_response(200, {"retry-after": text[:50]}, body, 0.1)
        assert isinstance(chat, ChatResponse | ProviderError)
        embedded = classify_embedding_response(200, {}, body, 0.1, expected=1)
        assert isinstance(embedded, EmbeddingResponse | ProviderError)
        assert isinstance(classify_status(401, {"x-ratelimit-reset-requests": text[:50]}, body, 0.1), ProviderError)
    anthropic_bodies = [
        orjson.dumps({"content": [{"type": "text", "text": text}], "usage": {"output_tokens": text[:20]}})
        if _encodable(text)
        else b"",
        text.encode("utf-8", errors="surrogateescape"),
        b'{"content": [{"type": "tool_use", "input": ' + text.encode("utf-8", errors="surrogateescape") + b"}]}",
        b'{"type": "error", "error": {"message": "' + text.encode("utf-8", errors="surrogateescape")[:200] + b'"}}',
    ]
    limits = {  # every header the adapter reads, holding the reply's text
        f"anthropic-ratelimit-{kind}-{field}": text[:50]
        for kind in ("requests", "tokens", "input-tokens", "output-tokens")
        for field in ("limit", "remaining", "reset")
    }
    for status in (200, 429, 529):
        for body in anthropic_bodies:
            reply = classify_messages_response(status, {**limits, "retry-after": text[:50]}, body, 0.1, now=0.0)
            assert isinstance(reply, ChatResponse | ProviderError)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(text=HOSTILE)
def test_no_hostile_reply_escapes_the_parsers_and_validators(text):
    check_generators(text)
    check_http_classifiers(text)


# ------------------------------------------------------------------ the reproductions of issue 21, item 8


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("structured reply of 1,000 nested [", lambda: read_structured("[" * 1000, *VALIDATORS[0])),
        ("free-form reply nested 1,000 deep", lambda: read_structured("[" * 1000 + "]" * 1000, *VALIDATORS[3])),
        ("integer beyond 64 bits", lambda: read_structured('{"n": ' + "9" * 30 + "}", *VALIDATORS[0])),
        ("lone surrogate", lambda: read_structured('{"s": "\\ud800"}', *VALIDATORS[0])),
        ("SQL with 100 nested parentheses", lambda: validate("sql", "SELECT " + "(" * 100 + "1" + ")" * 100)),
        ("Python nested too deep", lambda: validate("python", "x = " + "-" * 100_000 + "1")),
        ("Python too long a sum", lambda: validate("python", "x = " + "+".join(["1"] * 100_000))),
        ("JSON code nested too deep", lambda: validate("json", "[" * 100_000)),
    ],
)
def test_a_reply_no_parser_can_read_drops_its_row_with_the_reason(what, call):
    with pytest.raises(CellFailed) as info:
        read_reply("the reply", call)
    assert info.value.reason == UNREADABLE_REPLY
    print(what, "->", info.value.detail)
    # What was read, then the parser's own error.
    assert info.value.detail.startswith(("the reply: ", "the sql validator: ", "the python validator: ", "the json"))


def validate(language: str, code: str):
    return asyncio.run(validate_code(language, code, CodeValidation(ruff_rules=[])))


@pytest.mark.parametrize("dtype", ["int", "float", "json"])
@pytest.mark.parametrize("text", ["1.0e999", "9" * 5000, "[" * 5000, "abc"])
def test_a_value_that_does_not_coerce_is_a_drop_reason_not_a_crash(text, dtype):
    try:
        value = read_reply("value", coerce, text, dtype, "c", reason=f"not_{dtype}")
    except CellFailed as failed:
        assert failed.reason == f"not_{dtype}" and "column 'c'" in failed.detail
    else:
        assert dtype == "float" and value == float(text)  # 1.0e999 is a float (inf), 9…9 a large one
        assert text != "1.0e999" or value == float("inf")


# No wall-clock bound (speed belongs in benchmarks): the former regex took 20 s for 90 KB of backticks and grows
# at least quadratically, so on these megabyte replies it would run for most of an hour; the timeout catches that,
# while a linear pass takes a second or two even on a loaded machine.
@pytest.mark.timeout(60)
def test_code_is_extracted_in_linear_time_from_a_reply_of_fences():
    for reply in ("`" * 1_000_000, "```" * 300_000, "```a\n" * 200_000, "~~~\n" * 200_000):
        extract_code(reply, "sql")


@pytest.mark.timeout(120)  # a parser quadratic in the reply would blow far past this on 1 MB; no wall-clock bound
def test_a_large_reply_is_read_by_every_parser_in_bounded_time():
    reply = "```python\n" + "x = [1, 2, (3, {'a': 4})]\n" * 40_000 + "```"  # 1 MB
    check_generators(reply)
    for language in ("python", "json"):  # through the worker thread, as a run validates
        assert isinstance(validate(language, extract_code(reply, language)), list)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Cs"]), max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["n", "x", "s", "items"]), inner),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None, database=None)
@given(value=JSON_VALUES)
def test_a_reply_value_is_storable_exactly_when_the_parquet_writer_can_store_it(value):
    """`storable` checks one value with a scalar (a twentieth of the cost of a one-value array); it must refuse
    exactly what the row group's array, built as the writer builds it, would refuse."""
    for _, dtype in VALIDATORS:
        try:
            pa.array([to_arrow_value(value, dtype)], type=dtype)
        except Exception as exc:  # whatever Arrow refuses with, storable must refuse too
            with pytest.raises(type(exc)):
                storable(value, dtype)
        else:
            assert storable(value, dtype) is value


def test_nan_and_infinity_are_not_json_so_the_model_is_asked_again():
    value, problem = read_structured('{"x": NaN}', *VALIDATORS[0])
    assert value is None and "NaN is not a JSON value" in problem


# ------------------------------------------------------------------ expressions over a reply


def _expression(expr: str, answers: list[str]):
    """The `q` expression column's values over `answer` values (as a model might reply), in one batch."""

    config = DatasetConfig.from_dict(
        {
            "columns": [
                {"name": "answer", "type": "category", "values": ["0", "4"]},
                {"name": "q", "type": "expression", "expr": expr, "dtype": "float"},
            ],
            "run": {"seed": 1, "max_error_rate": 1.0},  # half the rows drop: the run goes on regardless
        }
    )
    plan = build_plan(config, len(answers))
    column = next(c for c in plan.columns if c.name == "q")
    spec = plan.row_groups[0]
    ctx = BatchContext(spec, np.random.default_rng(0), {"answer": answers}, list(range(len(answers))))
    return asyncio.run(ExpressionGenerator(column).batch(ctx)), config


def test_an_expression_that_raises_on_a_value_drops_its_row_naming_the_column_and_error(tmp_path):

    values, config = _expression("{{ 100 / (answer|int) }}", ["0", "4"])
    assert values == [FailedCell("expression_error", "column 'q': ZeroDivisionError: division by zero"), 25.0]
    values, _ = _expression("{{ (answer|int) / 2 }}", ["1" + "0" * 400])  # an int no float holds
    assert values[0].reason == "expression_error" and "OverflowError" in values[0].detail
    values, _ = _expression("{{ answer + 1 }}", ["0"])  # a str where the expression wants a number
    assert values[0].reason == "expression_error" and values[0].detail.startswith("column 'q': TypeError:")

    # Through a run: the rows are dropped and counted, the run completes.
    result = asyncio.run(run_job(config, 20, output=tmp_path))
    dropped = result.summary["rows_dropped_by_reason"]
    assert result.summary["status"] == "completed" and set(dropped) == {"q:expression_error"}
    assert result.summary["records_written"] + dropped["q:expression_error"] == 20

    # The template's own faults stay the config's: an unknown name at validation, internals at the first row.
    with pytest.raises(ConfigError, match="nosuch"):
        _expression("{{ 100 / nosuch }}", ["0"])
    with pytest.raises(TemplateError, match="Python internals"):
        _expression("{{ '{0.__class__}'.format(answer) }}", ["0"])


async def test_a_prompt_or_skip_condition_that_raises_on_a_value_drops_the_row():
    # Every template that renders row values (prompt, system prompt, skip_when, embedding text) reads data: a
    # value it cannot compute with drops that row with the column named, as an expression's does.

    with pytest.raises(CellFailed) as info:
        render(compile_template("Rate {{ 10 / n }}"), {"n": 0}, "judge")
    assert info.value.reason == TEMPLATE_ERROR and info.value.detail.startswith("column 'judge': ZeroDivisionError")

    config = DatasetConfig.from_dict(
        {
            "columns": [
                {"name": "n", "type": "category", "values": [0, 5]},
                {"name": "half", "type": "expression", "expr": "{{ n / 2 }}", "skip_when": "{{ 10 / n > 1 }}"},
            ]
        }
    )
    plan = build_plan(config, 4)
    column = next(c for c in plan.columns if c.name == "half")
    ctx = BatchContext(plan.row_groups[0], np.random.default_rng(0), {"n": [0, 5, 0, 5]}, [0, 1, 2, 3])
    values = await SkipAware(column, ExpressionGenerator(column)).batch(ctx)
    failed = FailedCell(TEMPLATE_ERROR, "column 'half': ZeroDivisionError: division by zero")
    assert values == [failed, SKIPPED, failed, SKIPPED]
