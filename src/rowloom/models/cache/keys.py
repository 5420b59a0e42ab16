"""The cache key of a chat request: a hash of everything that decides its reply.

Model id, the rendered messages (a re-ask's correction messages included), the reply schema and its name, every
inference parameter, the user's namespace, and — when asked — the provider and the sample (the engine's task id,
so one prompt repeated across rows stays one sample per row). Not the endpoint URL. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib

import orjson

from rowloom.models.types import ChatRequest

#: Part of every key: bump when the key's content or the stored reply's form changes, so old entries miss.
KEY_VERSION = 1
KEY_BYTES = 16


def request_key(
    request: ChatRequest, *, namespace: str = "", provider: str | None = None, sample: str | None = None
) -> bytes:
    """A 16-byte BLAKE2b digest of the request's reply-deciding parts (dict keys sorted: order does not matter)."""
    document = (
        KEY_VERSION,
        namespace,
        provider,
        sample,
        request.model,
        request.messages,
        request.params,
        request.json_schema,
        request.schema_name if request.json_schema is not None else None,
    )
    encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(encoded, digest_size=KEY_BYTES).digest()
