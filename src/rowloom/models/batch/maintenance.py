"""What `rowloom batches status|cancel OUT` does: the batches an output folder's journal says are open, their
status at the provider, and cancelling them.

Reaches each batch's provider with the settings the journal recorded (no secrets: the key is read from the
variable or file it names), or with the config's provider of the same name when the caller gives one. Must not
change the journal: a cancelled batch stays open in it, so the next run reads what it finished and sends its
unfinished lines again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from rowloom.config.models import ProviderConfig
from rowloom.errors import RowloomError
from rowloom.models.batch.journal import JOURNAL_FILE, BatchJournal, JournalBatch
from rowloom.models.clients.openai import OpenAIClient
from rowloom.models.clients.openai_batch import BatchStatus, OpenAIBatchApi
from rowloom.models.types import ProviderError


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A batch the journal holds open, with its status at the provider (None: unknown, `error` says why)."""

    alias: str
    provider: str
    batch_id: str | None
    lines: int
    status: BatchStatus | None = None
    error: str | None = None


def open_entries(folder: Path) -> list[JournalBatch]:
    """The batches the journal in `folder` says were planned and not settled (none without a journal)."""
    return BatchJournal(folder / JOURNAL_FILE).open_batches()


async def open_batches(
    folder: Path, providers: Mapping[str, ProviderConfig] | None = None, *, cancel: bool = False
) -> list[OpenBatch]:
    """Every open batch of the journal in `folder` with its status at the provider; with `cancel`, each one not
    finished is asked to cancel first (its status then says `cancelling` or how it ended)."""
    found: list[OpenBatch] = []
    clients: dict[str, OpenAIClient] = {}
    try:
        for entry in open_entries(folder):
            name = (entry.provider or {}).get("name", "?")
            if entry.batch_id is None:  # planned, and maybe created: a resume finds it by its key
                found.append(OpenBatch(entry.alias, name, None, len(entry.lines), error="never heard created"))
                continue
            try:
                client = clients.get(name) or clients.setdefault(name, OpenAIClient(_provider(entry, providers)))
                api = OpenAIBatchApi(client)
                status = await api.status(entry.batch_id)
                if cancel and not status.terminal:
                    status = await api.cancel(entry.batch_id)
                found.append(OpenBatch(entry.alias, name, entry.batch_id, len(entry.lines), status))
            except (ProviderError, RowloomError) as exc:
                found.append(OpenBatch(entry.alias, name, entry.batch_id, len(entry.lines), error=str(exc)))
    finally:
        for client in clients.values():
            await client.aclose()
    return found


def _provider(entry: JournalBatch, providers: Mapping[str, ProviderConfig] | None) -> ProviderConfig:
    recorded = entry.provider or {}
    name = recorded.get("name")
    if providers is not None and name in providers:
        return providers[name]
    try:
        return ProviderConfig.model_validate(recorded)
    except ValidationError:
        raise RowloomError(
            f"the journal records no usable provider for batch {entry.batch_id}; pass the run's config (--config)"
        ) from None
