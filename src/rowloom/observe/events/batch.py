"""Batch-API events: a batch submitted, a batch finished, one line's result handed to the cell that asked.

Values only, emitted by `rowloom.models.batch` and the request executor; no logic. `key` is the endpoint's label
behind `BATCH_KEY_PREFIX`, so batch traffic never mixes with the endpoint's online requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rowloom.observe.events.base import Event, register_event

BATCH_KEY_PREFIX = "batch:"
"""The `key` of an alias's batch traffic in events is this prefix and its endpoint's label (`batch:hosted/gpt`)."""


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class BatchSubmitted(Event):
    """A batch was created: `lines` requests in one input file of `size_bytes`, `resubmitted` of them sent before."""

    kind: ClassVar[str] = "batch_submitted"
    key: str
    alias: str
    batch_id: str
    lines: int
    resubmitted: int
    size_bytes: int
    resumed: bool = False  # picked up from the journal of an earlier run, not created by this one


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class BatchFinished(Event):
    """A batch ended (`status`: completed, failed, expired, cancelled) and its results were read, after
    `waited_s` since this process created or resumed it; `not_run` lines never ran (expiry, cancel)."""

    kind: ClassVar[str] = "batch_finished"
    key: str
    alias: str
    batch_id: str
    status: str
    lines: int
    succeeded: int
    failed: int
    not_run: int
    waited_s: float


@register_event
@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLineCompleted(Event):
    """A cell's request got its answer from a batch: `outcome` as an online attempt's would be (success,
    server_error, ...; `not_run` when no batch ever ran it), with the reply's usage for the token ledger, which
    prices it at the model's batch prices. Emitted once per request, in the asking cell's context."""

    kind: ClassVar[str] = "batch_line_completed"
    key: str
    alias: str
    group: str
    outcome: str
    usage_known: bool | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
