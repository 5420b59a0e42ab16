"""What the simulated provider says: deterministic text, JSON that fits (or breaks) a JSON Schema, embeddings.

Pure functions of the request (model + messages), never of time or load; owns no HTTP, limits or stats.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

# A fixed vocabulary keeps replies readable and makes "one token = one word" usage accounting exact.
_WORDS = (  # noqa: SIM905 - a word list reads better as prose than as a 100-line literal
    "amber river quiet signal harbor lantern meadow orbit pebble quartz ridge saddle timber umbrella "
    "valley willow yonder zephyr anchor beacon canyon delta ember falcon glacier horizon island jasmine "
    "kettle lagoon marble nectar oasis prairie quill raven summit tundra unity velvet walnut xenon "
    "yarrow zenith atlas breeze cedar dune echo fjord grove hollow ivory juniper kelp lichen mesa nimbus "
    "opal pine reef sierra thistle upland vista wharf yew acorn basalt coral drift estuary fern geyser "
    "heath inlet jetty knoll loam mist north ocean plume quarry rain sand tide umber vapor wave copper "
    "silver granite maple birch heron otter badger lynx crane finch swift robin sparrow"
).split()
# Bare `json_object` mode promises only "some object"; a fixed small shape keeps replies useful.
_JSON_OBJECT_SHAPE = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 0, "maximum": 10}},
    "required": ["answer", "score"],
}
# Text replies draw their length from this range (`SimulatorConfig.reply_words_min/max`), then max_tokens caps it.
TEXT_WORDS = (30, 60)
# Past this depth a recursive schema ($ref cycles) gets only what it requires, so generation terminates.
_DEEP = 6


class ReplyRequestError(ValueError):
    """The request cannot be answered (bad shape); the server turns it into a 400 with `param` named."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatReply:
    """One chat completion's content and its usage accounting."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    structured: bool


def prompt_seed(model: str, messages: Any) -> int:
    """A 64-bit seed from the model and messages only, so equal prompts always get equal replies."""
    blob = orjson.dumps([model, messages], option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def estimate_tokens(text_chars: int) -> int:
    """Prompt tokens estimated the way the design fixes it: characters / 4, at least 1."""
    return max(1, math.ceil(text_chars / 4))


def _message_chars(messages: list[Any]) -> int:
    chars = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            # Multi-part content: count the text parts, which is all a token estimate can see.
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return chars


def response_schema(body: dict[str, Any]) -> dict[str, Any] | bool | None:
    """The JSON Schema a request asks for: a schema, True for bare `json_object` mode, None for text."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return True
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict | bool):
            raise ReplyRequestError("response_format.json_schema.schema must be a JSON Schema", "response_format")
        return schema
    raise ReplyRequestError(f"unsupported response_format type {kind!r}", "response_format")


def chat_reply(
    body: dict[str, Any],
    default_max_tokens: int,
    violate_schema: bool = False,
    words: tuple[int, int] = TEXT_WORDS,
) -> ChatReply:
    """Answer a chat-completions body: text capped by max_tokens, or JSON for a `response_format` schema.

    A text reply has between `words[0]` and `words[1]` words (one word = one token), fewer if max_tokens says so.
    `violate_schema=True` returns valid JSON that breaks the requested schema (when the schema can be broken).
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ReplyRequestError("'messages' must be a non-empty list", "messages")
    model = str(body.get("model", ""))
    schema = response_schema(body)
    rng = random.Random(prompt_seed(model, messages))
    prompt_tokens = estimate_tokens(_message_chars(messages))
    if schema is None:
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
        if not isinstance(cap, int) or cap < 1:
            raise ReplyRequestError("max_tokens must be a positive integer", "max_tokens")
        wanted = rng.randint(*words)
        count = min(wanted, cap)
        text = " ".join(rng.choices(_WORDS, k=count))
        return ChatReply(text, prompt_tokens, count, "length" if count < wanted else "stop", False)
    root: Any = _JSON_OBJECT_SHAPE if schema is True else schema
    faker = SchemaFaker(root, rng)
    value = faker.invalid(root) if violate_schema else faker.value(root)
    content = orjson.dumps(value).decode()
    # JSON has no natural words; the same chars/4 estimate as prompts keeps tpm accounting consistent.
    return ChatReply(content, prompt_tokens, estimate_tokens(len(content)), "stop", True)


def embedding_vector(model: str, text: str, dim: int) -> list[float]:
    """A deterministic unit vector of length `dim` for (model, text)."""
    digest = hashlib.blake2b(f"{model}\0{text}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class SchemaFaker:
    """Generates values for a JSON Schema (draft 7 / 2020-12 subset that pydantic emits) from a seeded RNG.

    Supported: type (incl. lists), object/properties/required/additionalProperties, string length and a few
    formats, integer/number bounds (inclusive and exclusive), boolean, null, array items/prefixItems/min/max,
    enum/const, anyOf/oneOf (first branch), allOf (merged), and `$ref` into `$defs`/`definitions`.
    `pattern` is not honoured.
    """

    def __init__(self, root: Any, rng: random.Random):
        self.root = root
        self.rng = rng

    def value(self, schema: Any, depth: int = 0) -> Any:
        """A value valid against `schema` (relative to this faker's root for `$ref`)."""
        if schema is True or schema == {}:
            return self.rng.choice(_WORDS)
        if not isinstance(schema, dict):
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(self._pick_branch(schema[key], depth), depth + 1)
        kind = self._type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def invalid(self, schema: Any) -> Any:
        """Valid JSON that violates `schema`; falls back to a valid value when the schema accepts anything."""
        broken, value = self._break(schema, 0)
        return value if broken else self.value(schema)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow `$ref` (JSON pointer into the root) and merge `allOf`, keeping sibling keywords."""
        for _ in range(32):  # bounded: a pure ref cycle must not hang the server
            if "$ref" in schema:
                target = self._pointer(schema["$ref"])
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **siblings}
            elif "allOf" in schema:
                merged = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    part = self.resolve(part) if isinstance(part, dict) else {}
                    for key, val in part.items():
                        if key == "properties":
                            merged["properties"] = {**merged.get("properties", {}), **val}
                        elif key == "required":
                            merged["required"] = [*merged.get("required", []), *val]
                        else:
                            merged.setdefault(key, val)
                schema = merged
            else:
                return schema
        return schema

    def _pointer(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ReplyRequestError(f"only local $ref is supported, got {ref!r}", "response_format")
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                raise ReplyRequestError(f"$ref {ref!r} points nowhere", "response_format")
        return node if isinstance(node, dict) else {}

    def _pick_branch(self, branches: list[Any], depth: int) -> Any:
        # Deep in a recursive schema prefer a null branch (Optional[Node]) so the value stays finite.
        if depth > _DEEP:
            for branch in branches:
                if isinstance(branch, dict) and branch.get("type") == "null":
                    return branch
        return branches[0]

    @staticmethod
    def _type_of(schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            return non_null[0] if non_null else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "additionalProperties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        keep = [name for name in props if depth <= _DEEP or name in required]
        out = {name: self.value(props[name], depth + 1) for name in keep}
        for name in required - out.keys():
            extra = schema.get("additionalProperties")
            out[name] = self.value(extra if isinstance(extra, dict) else True, depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and depth <= _DEEP:
            # A map type (dict[str, X]): a couple of entries show the value shape.
            for _ in range(self.rng.randint(1, 2)):
                out[self.rng.choice(_WORDS)] = self.value(extra, depth + 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", True)
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", low + 3))
        if depth > _DEEP:
            high = low
        count = max(len(prefix) if items is False else 0, self.rng.randint(min(max(low, 1), high), high))
        out: list[Any] = [self.value(s, depth + 1) for s in prefix[:count]]
        seen = {orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in out}
        tries = 0
        while len(out) < count and items is not False and tries < count * 4 + 4:
            tries += 1
            item = self.value(items, depth + 1)
            key = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            if schema.get("uniqueItems") and key in seen:
                continue
            seen.add(key)
            out.append(item)
        return out

    @staticmethod
    def _bounds(schema: dict[str, Any], default_span: float) -> tuple[float, float, bool, bool]:
        low, high = schema.get("minimum"), schema.get("maximum")
        ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        open_low = open_high = False
        # Draft 4 spells exclusivity as booleans beside minimum/maximum; later drafts as numbers.
        if isinstance(ex_low, bool):
            open_low = ex_low
        elif isinstance(ex_low, int | float) and (low is None or ex_low >= low):
            low, open_low = ex_low, True
        if isinstance(ex_high, bool):
            open_high = ex_high
        elif isinstance(ex_high, int | float) and (high is None or ex_high <= high):
            high, open_high = ex_high, True
        if low is None and high is None:
            low, high = 0, default_span
        elif low is None:
            low = high - default_span
        elif high is None:
            high = low + default_span
        return float(low), float(high), open_low, open_high

    def _integer(self, schema: dict[str, Any]) -> int:
        low, high, open_low, open_high = self._bounds(schema, 100)
        lo = math.floor(low) + 1 if open_low and low == math.floor(low) else math.ceil(low)
        hi = math.ceil(high) - 1 if open_high and high == math.ceil(high) else math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = -(-lo // step), hi // step
            return step * self.rng.randint(first, max(first, last))
        return self.rng.randint(lo, max(lo, hi))

    def _number(self, schema: dict[str, Any]) -> float:
        low, high, open_low, open_high = self._bounds(schema, 100.0)
        value = round(self.rng.uniform(low, high), 3)
        if value < low or value > high or (open_low and value <= low) or (open_high and value >= high):
            value = (low + high) / 2  # rounding hit a bound; the midpoint is strictly inside
        return value

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            text = f"20{self.rng.randint(10, 29)}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        elif fmt == "date-time":
            text = f"2024-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}T12:00:00Z"
        elif fmt == "email":
            text = f"{self.rng.choice(_WORDS)}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{self.rng.choice(_WORDS)}"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        else:
            text = " ".join(self.rng.choices(_WORDS, k=self.rng.randint(1, 4)))
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < low:
            text += "x" * (low - len(text))
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text

    def _break(self, schema: Any, depth: int) -> tuple[bool, Any]:
        """(True, value) with a value that violates `schema`, or (False, None) if nothing is forbidden."""
        if not isinstance(schema, dict) or depth > _DEEP:
            return (True, None) if schema is False else (False, None)
        schema = self.resolve(schema)
        if "const" in schema or "enum" in schema:
            allowed = [schema["const"]] if "const" in schema else list(schema["enum"])
            return True, next(v for v in ("__not_allowed__", -987654321, []) if v not in allowed)
        if "anyOf" in schema or "oneOf" in schema:
            return False, None  # breaking every branch at once is not worth the complexity
        kind = self._type_of(schema) if ("type" in schema or schema.keys() & {"properties", "items"}) else None
        if kind is None:
            return False, None
        if kind != "object":
            types = schema["type"] if isinstance(schema.get("type"), list) else [kind]
            return ("object" not in types), {"__rowloom_sim__": "schema violation"}
        valid = self._object(schema, depth)
        required = [name for name in schema.get("required") or () if name in valid]
        if required:
            del valid[required[0]]
            return True, valid
        for name, sub in (schema.get("properties") or {}).items():
            broken, bad = self._break(sub, depth + 1)
            if broken:
                valid[name] = bad
                return True, valid
        if schema.get("additionalProperties") is False:
            valid["__rowloom_sim_unexpected__"] = True
            return True, valid
        return True, ["not", "an", "object"]
