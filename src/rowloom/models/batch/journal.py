"""`BatchJournal`: what a run sent to a batch API, written before each call it guards, so that a resumed run polls
the batches it already created instead of submitting their lines again (which would bill them twice).

Owns one append-only JSONL file in the run's output folder; each record is flushed and fsynced before the call
it guards goes out. A batch is `planned` (its key and lines, before it is created), `created` (the provider's
batch id, as soon as the API returned it) and `settled` (its results were taken). Must not talk to providers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: The journal's file name in a run's output folder.
JOURNAL_FILE = "batches.jsonl"


@dataclass
class JournalBatch:
    """A batch the journal says was planned and not settled: its key, alias, lines and (once known) its id."""

    key: str
    alias: str
    lines: dict[str, str]  # custom_id -> digest of the request it carries
    batch_id: str | None = None
    provider: dict[str, Any] | None = None  # the provider's settings without secrets (what a cancel needs)
    settled: bool = False  # its results were taken (the rows they went to may not have been written)


class BatchJournal:
    """The journal file at `path` (created on first write; its folder must exist)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def open_batches(self) -> list[JournalBatch]:
        """Batches planned and not settled, in the order they were planned."""
        return [b for b in self.batches() if not b.settled]

    def batches(self) -> list[JournalBatch]:
        """Every batch planned, in the order they were planned. A record cut short by a crash (the file's last
        line) is ignored: the call it guarded never went out."""
        batches: dict[str, JournalBatch] = {}
        if not self.path.is_file():
            return []
        for raw in self.path.read_bytes().splitlines():
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            kind, key = record.get("kind"), record.get("key")
            if kind == "planned":
                batches[key] = JournalBatch(
                    key, record["alias"], dict(record["lines"]), provider=record.get("provider")
                )
            elif kind == "created" and key in batches:
                batches[key].batch_id = record["batch"]
            elif kind == "settled" and key in batches:
                batches[key].settled = True
        return list(batches.values())

    def planned(
        self, key: str, alias: str, lines: Mapping[str, str], provider: Mapping[str, Any] | None = None
    ) -> None:
        record: dict[str, Any] = {"kind": "planned", "key": key, "alias": alias, "lines": dict(lines)}
        if provider is not None:
            record["provider"] = dict(provider)
        self._append(record)

    def created(self, key: str, batch_id: str) -> None:
        self._append({"kind": "created", "key": key, "batch": batch_id})

    def settled(self, key: str) -> None:
        self._append({"kind": "settled", "key": key})

    def _append(self, record: dict[str, object]) -> None:
        with self.path.open("ab") as out:
            out.write(orjson.dumps(record) + b"\n")
            out.flush()
            os.fsync(out.fileno())
