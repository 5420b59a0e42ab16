"""How a model alias with `execution: batch` sends its requests through a provider's batch API.

A batch column's ready cells are gathered into one batch until it is full (`max_requests` lines or `max_bytes`)
or `flush_after_s` has passed since its first cell; the batch is then uploaded, created and polled (waits growing
from `poll_min_s` to `poll_max_s`). Lines that come back failed, expired or cancelled go into a later batch, up to
`max_attempts` sends, then online once if `retry_online` allows it, and only then is their row dropped.
"""

from __future__ import annotations

import re

from pydantic import ByteSize, Field, field_validator, model_validator

from rowloom.config.base import ConfigModel

#: OpenAI's limits on one batch: 50,000 requests and an input file of 200 MB.
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200_000_000
_WINDOW = re.compile(r"^[1-9][0-9]*[hd]$")


class BatchConfig(ConfigModel):
    """`models[].batch`: when a batch is full or due, how long the provider may take, how it is polled."""

    max_requests: int = Field(
        MAX_BATCH_REQUESTS, ge=1, le=MAX_BATCH_REQUESTS, description="Most lines in one batch (OpenAI: 50,000)."
    )
    max_bytes: ByteSize = Field(
        ByteSize(MAX_BATCH_BYTES),
        description="Largest input file of one batch, e.g. 200MB or 50MiB (OpenAI: 200 MB).",
    )
    completion_window: str = Field(
        "24h", description="How long the provider may take to finish a batch, e.g. 24h (OpenAI accepts only 24h)."
    )
    flush_after_s: float = Field(
        30.0, ge=0, description="Seconds after a batch's first line that it is sent even when not full."
    )
    poll_min_s: float = Field(5.0, gt=0, description="First wait between two status checks of a batch.")
    poll_max_s: float = Field(60.0, gt=0, description="Longest wait between two status checks (each grows 1.5×).")
    max_attempts: int = Field(
        3, ge=1, le=20, description="Sends of one line (failed, expired or cancelled lines go in a later batch)."
    )
    retry_online: bool = Field(
        False,
        description=(
            "Send a line that failed in every batch once more as an online request (at online prices) before its "
            "row is dropped."
        ),
    )

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, value: ByteSize) -> ByteSize:
        if not 1024 <= value <= MAX_BATCH_BYTES:
            raise ValueError("must be between 1KB and 200MB (OpenAI's limit), e.g. 200MB")
        return value

    @field_validator("completion_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not _WINDOW.match(value):
            raise ValueError(f"{value!r} is not a window; write hours or days, e.g. 24h")
        return value

    @model_validator(mode="after")
    def _poll_order(self) -> BatchConfig:
        if self.poll_min_s > self.poll_max_s:
            raise ValueError(f"poll_min_s ({self.poll_min_s}) is above poll_max_s ({self.poll_max_s}); swap them")
        return self
