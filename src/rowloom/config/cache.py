"""`CacheConfig`: the reply cache of a run (`run.cache`) — whether it is read and written, where, and its key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rowloom.config.base import ConfigModel

CacheMode = Literal["readwrite", "read", "write", "off"]


class CacheConfig(ConfigModel):
    """Replies kept across runs, so a rerun pays only for the requests that changed (docs/cache.md)."""

    mode: CacheMode | None = Field(
        None,
        description=(
            "readwrite: answer from the cache, store new replies; read: answer from it, store nothing; write: "
            "always ask the provider, store its replies; off: no cache. Unset: $ROWLOOM_CACHE, else readwrite."
        ),
    )
    path: str | None = Field(
        None,
        description="Cache folder. Unset: $ROWLOOM_CACHE_DIR, else the user cache folder (~/.cache/rowloom).",
    )
    namespace: str = Field(
        "", max_length=200, description="Part of every key: a new namespace asks the provider again (fresh samples)."
    )
    max_size_mb: float = Field(
        2048, gt=0, description="Bound on the stored replies; the least recently used go first beyond it."
    )
    scope_by_provider: bool = Field(
        False,
        description="Key replies by provider too, when one model id answers differently on different endpoints.",
    )
    share_identical: bool = Field(
        False,
        description=(
            "Identical requests of different rows share one reply (one request). Off: each row's cell is its own "
            "sample, so a prompt repeated across rows keeps its rows' variety at temperature > 0."
        ),
    )
