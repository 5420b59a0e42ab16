"""Deterministic replies of the simulator: text length, JSON valid (or deliberately invalid) against schemas."""

from __future__ import annotations

import enum
from typing import Any, Literal

import jsonschema
import orjson
import pytest
from pydantic import BaseModel, Field

from rowloom.bench.sim_replies import ReplyRequestError, chat_reply, embedding_vector


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str = Field(min_length=3, max_length=12)
    zip_code: int = Field(ge=10000, le=99999)


class Person(BaseModel):
    name: str
    age: int = Field(gt=0, lt=130)
    score: float = Field(ge=0.0, lt=1.0)
    favourite: Color
    kind: Literal["a", "b"]
    home: Address
    previous: list[Address] = Field(min_length=1, max_length=3)
    nickname: str | None = None
    tags: dict[str, int] = {}
    active: bool


class Node(BaseModel):
    """Recursive: generation must terminate."""

    label: str
    children: list[Node] = []
    parent: Node | None = None


HAND_WRITTEN = {
    "type": "object",
    "properties": {
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
        "level": {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5},
        "even": {"type": "integer", "minimum": 1, "maximum": 9, "multipleOf": 2},
        "const": {"const": "fixed"},
        "either": {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]},
        "maybe": {"type": ["null", "boolean"]},
        "nothing": {"type": "null"},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        "unique": {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True, "minItems": 2},
        "when": {"type": "string", "format": "date-time"},
        "ref": {"$ref": "#/definitions/Thing"},
        "merged": {"allOf": [{"$ref": "#/definitions/Thing"}, {"properties": {"extra": {"type": "boolean"}}}]},
    },
    "required": ["ratio", "level", "even", "const", "either", "maybe", "nothing", "pair", "unique", "ref"],
    "additionalProperties": False,
    "definitions": {
        "Thing": {
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 40}},
            "required": ["id"],
        }
    },
}

SCHEMAS = {
    "pydantic_nested_ref_enum_array": Person.model_json_schema(),
    "pydantic_recursive": Node.model_json_schema(),
    "hand_written_bounds_and_combinators": HAND_WRITTEN,
    "array_root": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}, "minItems": 1},
}


def structured_body(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    return {
        "model": "sim-model",
        "messages": [{"role": "user", "content": prompt}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    }


@pytest.mark.parametrize("name", SCHEMAS)
def test_structured_replies_are_valid_against_the_schema(name: str):
    schema = SCHEMAS[name]
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for i in range(40):
        reply = chat_reply(structured_body(schema, f"row {i}"), default_max_tokens=60)
        value = orjson.loads(reply.content)
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (value, errors)
        assert reply.structured


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_violation_produces_json_the_schema_rejects(name: str):
    schema = SCHEMAS[name]
    for i in range(10):
        reply = chat_reply(structured_body(schema, f"row {i}"), 60, violate_schema=True)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(orjson.loads(reply.content), schema)


def test_structured_replies_are_deterministic_for_equal_prompts():
    schema = SCHEMAS["pydantic_nested_ref_enum_array"]
    first = chat_reply(structured_body(schema, "same"), 60).content
    again = chat_reply(structured_body(schema, "same"), 60).content
    other = chat_reply(structured_body(schema, "different"), 60).content
    assert first == again
    assert first != other


def test_replies_depend_on_the_model_too():
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    assert chat_reply(body, 60).content != chat_reply({**body, "model": "b"}, 60).content


def test_json_object_mode_returns_a_json_object():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}
    value = orjson.loads(chat_reply(body, 60).content)
    assert isinstance(value, dict)
    assert value


def test_text_reply_length_is_bounded_by_default_max_tokens():
    lengths = {
        chat_reply({"model": "m", "messages": [{"role": "user", "content": str(i)}]}, 40).completion_tokens
        for i in range(50)
    }
    assert max(lengths) == 40
    assert min(lengths) >= 30


def test_text_reply_length_comes_from_the_given_word_range_before_the_cap():
    def lengths(cap: int) -> set[int]:
        bodies = (
            {"model": "m", "messages": [{"role": "user", "content": str(i)}], "max_tokens": cap} for i in range(50)
        )
        return {chat_reply(body, 60, words=(100, 120)).completion_tokens for body in bodies}

    assert min(lengths(1000)) >= 100 and max(lengths(1000)) <= 120
    assert lengths(50) == {50}


def test_unsupported_response_format_is_a_request_error():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}
    with pytest.raises(ReplyRequestError) as info:
        chat_reply(body, 60)
    assert info.value.param == "response_format"


def test_embedding_vectors_are_unit_length_and_stable():
    first = embedding_vector("m", "hello", 8)
    assert first == embedding_vector("m", "hello", 8)
    assert abs(sum(x * x for x in first) - 1.0) < 1e-12
    assert first != embedding_vector("m", "hello!", 8)
