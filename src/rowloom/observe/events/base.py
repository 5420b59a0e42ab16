"""The base event type, its JSON normalisation and the registry used to read events back.

Concrete events live beside this module by concern (request, scheduler); each registers itself.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import orjson

from rowloom.observe.context import current

_REGISTRY: dict[str, type[Event]] = {}
E = TypeVar("E", bound="type[Event]")


def register_event(cls: E) -> E:
    """Class decorator: make an event type readable by `event_from_dict` under its `kind`."""
    kind = cls.kind  # type: ignore[attr-defined]
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise ValueError(f"event kind {kind!r} registered twice")
    _REGISTRY[kind] = cls
    _install_init(cls)
    return cls


def event_types() -> dict[str, type[Event]]:
    """Every registered event kind and its class."""
    return dict(_REGISTRY)


def to_json_value(value: Any) -> Any:
    """Normalise a diagnostic value to JSON types, so no Python object leaks out of an event."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json_value(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every event: a monotonic timestamp plus the correlation ids of the emitting context."""

    kind: ClassVar[str] = "event"

    ts: float = dataclasses.field(default_factory=time.monotonic)
    job: str | None = dataclasses.field(default_factory=lambda: current().job)
    row_group: int | None = dataclasses.field(default_factory=lambda: current().row_group)
    column: str | None = dataclasses.field(default_factory=lambda: current().column)
    task: str | None = dataclasses.field(default_factory=lambda: current().task)
    attempt: str | None = dataclasses.field(default_factory=lambda: current().attempt)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a `kind` key; unset correlation ids are left out."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is None and name in _CORRELATION_FIELDS:
                continue
            out[name] = to_json_value(value)
        return out

    def to_record(self) -> dict[str, Any]:
        """Like `to_dict` but the values as they are, for encoders that normalise natively (see `to_json`)."""
        builder = _RECORD_BUILDERS.get(type(self))
        if builder is None:
            builder = _RECORD_BUILDERS[type(self)] = _compile_record_builder(type(self))
        return builder(self)

    def to_json(self) -> bytes:
        """`to_dict()` encoded as one JSON object."""
        return encode_json(self.to_record())


def encode_json(value: Any) -> bytes:
    """Compact JSON with `to_dict` semantics, fast: orjson turns NaN and infinities into null, enums into their
    value, tuples into lists and keys into strings natively, and calls `to_json_value` for anything else."""
    try:
        return orjson.dumps(value, default=to_json_value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which the standard library can encode
        return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False).encode()


_CORRELATION_FIELDS = frozenset({"job", "row_group", "column", "task", "attempt"})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


_RECORD_BUILDERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _compile_record_builder(cls: type[Event]) -> Callable[[Any], dict[str, Any]]:
    """A function that builds `to_record()` for one event type with straight-line attribute reads.

    The JSONL sink encodes every event, so this is the per-event cost of `--events`: generated code (as
    `dataclasses` itself does) is about twice as fast as a loop over the fields.
    """
    lines = ["def record(e):", f"    d = {{'kind': {cls.kind!r}}}"]
    for name in _field_names(cls):
        if not name.isidentifier():
            raise TypeError(f"event field {name!r} of {cls.__name__} is not an identifier")
        if name in _CORRELATION_FIELDS:
            lines += [f"    v = e.{name}", "    if v is not None:", f"        d[{name!r}] = v"]
        else:
            lines.append(f"    d[{name!r}] = e.{name}")
    lines.append("    return d")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    return namespace["record"]


_FROM_CONTEXT: Any = type("_FromContext", (), {"__repr__": lambda self: "<from the context>", "__slots__": ()})()
_FACTORY: Any = type("_Factory", (), {"__repr__": lambda self: "<from the factory>", "__slots__": ()})()


def _install_init(cls: type[Event]) -> None:
    """Give an event type an `__init__` that reads the correlation context once, however many ids it fills in
    (the fields' factories read it once each), and sets each slot through its descriptor (the frozen dataclass's
    `__init__` looks up `object.__setattr__` per field): about half the cost of making an event, on the hot path
    of every request. The same signature and defaults; a type it cannot mirror exactly (positional or non-init
    fields, a `__post_init__`) keeps the dataclass's."""
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init or not f.kw_only for f in fields):
        return
    env: dict[str, Any] = {"_current": current, "_CTX": _FROM_CONTEXT, "_FACTORY": _FACTORY}
    params, body, sets = [], [], []
    context_ids = [f.name for f in fields if f.name in _CORRELATION_FIELDS]
    for f in fields:
        name = f.name
        setter = getattr(getattr(cls, name, None), "__set__", None)
        if not name.isidentifier() or name.startswith("_") or setter is None:
            return
        env[f"_set_{name}"] = setter
        sets.append(f"    _set_{name}(self, {name})")
        if name in _CORRELATION_FIELDS:
            params.append(f"{name}=_CTX")
        elif f.default is not dataclasses.MISSING:
            env[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{name}"] = f.default_factory
            params.append(f"{name}=_FACTORY")
            body.append(f"    if {name} is _FACTORY:\n        {name} = _factory_{name}()")
        else:
            params.append(name)
    if context_ids:
        body.append("    if " + " or ".join(f"{name} is _CTX" for name in context_ids) + ":")
        body.append("        context = _current()")
        body += [f"        if {name} is _CTX:\n            {name} = context.{name}" for name in context_ids]
    source = "\n".join([f"def __init__(self, *, {', '.join(params)}):", *body, *sets])
    exec(source, env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass field names of an event type, computed once per type (emitting is on the hot path)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from `Event.to_dict()` output (fields unknown to the class are ignored)."""
    kind = data.get("kind")
    cls = _REGISTRY.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for key in _CORRELATION_FIELDS:
        kwargs.setdefault(key, None)
    return cls(**kwargs)
