"""Export a finished output folder to JSONL: every column, or chat format (`{"messages": [...]}`) for fine-tuning.

Streams the Parquet parts listed in the manifest one record batch at a time and writes the file atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rowloom.engine.output_location import OutputLocation
from rowloom.engine.storage import MANIFEST, OutputStore
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import OutputError

ExportFormat = Literal["chat-jsonl", "jsonl"]
CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: the file, its lines, and rows left out for a message without content."""

    path: Path
    records: int
    rows_left_out: int


class ExportError(OutputError):
    """A row cannot be exported in the requested format (the message names the row and the fix)."""


class MissingColumns(ExportError):
    """The output has no column the export reads: `missing` names them, `available` lists the columns it has."""

    def __init__(self, out_dir: Path | OutputLocation, missing: list[str], available: list[str]):
        self.missing, self.available = missing, available
        super().__init__(
            f"{out_dir} has no column {', '.join(map(repr, missing))}; its columns: {', '.join(available)}"
        )


def _rows(out_dir: OutputLocation, columns: list[str] | None, batch_rows: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    manifest = OutputStore.read_manifest(out_dir)
    if manifest is None:
        raise ExportError(f"{out_dir} has no {MANIFEST}; give the --output folder of a rowloom run")
    for entry in manifest.get("row_groups", []):
        with pq.ParquetFile(out_dir.path(entry["file"]), filesystem=out_dir.filesystem) as part:
            missing = [c for c in columns or [] if c not in part.schema_arrow.names]
            if missing:
                raise MissingColumns(out_dir, missing, part.schema_arrow.names)
            for batch in part.iter_batches(batch_size=batch_rows, columns=columns):
                yield from batch.to_pylist()


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def chat_messages(row: Mapping[str, Any], number: int, messages_column: str, roles: Mapping[str, str]) -> list | None:
    """The chat messages of one row: its messages column, or one message per role from `roles` columns.

    None when a message has no content (a skipped or null cell): such rows are left out and counted.
    """
    if roles:
        messages = [{"role": role, "content": row.get(column)} for role, column in roles.items()]
    else:
        messages = row.get(messages_column)
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except ValueError:
                raise ExportError(f"row {number}: {messages_column} is text that is not JSON messages") from None
    if not isinstance(messages, list) or not messages:
        raise ExportError(
            f"row {number}: {messages_column!r} holds {type(messages).__name__}, not a list of messages; "
            "write it with a schema_transform processor (fields: {messages: [{role: ..., content: ...}]})"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in CHAT_ROLES:
            raise ExportError(f"row {number}, message {i}: needs a role among {', '.join(CHAT_ROLES)}")
        if message.get("content") is None:
            return None
        if not isinstance(message.get("content"), str):
            raise ExportError(
                f"row {number}, message {i} ({message.get('role')}): content is "
                f"{type(message.get('content')).__name__}, not text"
            )
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def export_jsonl(
    out_dir: str | Path | OutputLocation,
    path: str | Path,
    *,
    format: ExportFormat = "chat-jsonl",
    messages_column: str = "messages",
    roles: Mapping[str, str] | None = None,
    batch_rows: int = 1024,
    terms: Terms = CLI_TERMS,
) -> ExportResult:
    """Write the rows of a finished run as JSONL to `path`; returns the lines written and rows left out.

    chat-jsonl: `{"messages": [{"role", "content"}, ...]}` per row, from `messages_column` or, with `roles`
    (role -> column, e.g. {"user": "question", "assistant": "answer"}), built from those columns. `out_dir` is
    what `run --output` takes: a local folder or a `pyarrow.fs` URI (`terms` name it in errors).
    """
    location, path = OutputLocation.of(out_dir, terms), Path(path)
    if format not in ("chat-jsonl", "jsonl"):
        raise ExportError(f"unknown export format {format!r}; use chat-jsonl or jsonl")
    roles = dict(roles or {})
    bad_roles = sorted(set(roles) - set(CHAT_ROLES))
    if bad_roles:
        raise ExportError(f"unknown chat role(s) {', '.join(bad_roles)}; use {', '.join(CHAT_ROLES)}")
    columns = None
    if format == "chat-jsonl":
        columns = list(roles.values()) if roles else [messages_column]
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = left_out = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for number, row in enumerate(_rows(location, columns, batch_rows)):
                record: Any = row
                if format == "chat-jsonl":
                    messages = chat_messages(row, number, messages_column, roles)
                    if messages is None:
                        left_out += 1
                        continue
                    record = {"messages": messages}
                fh.write(json.dumps(record, ensure_ascii=False, default=_json_default))
                fh.write("\n")
                written += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(path=path, records=written, rows_left_out=left_out)
