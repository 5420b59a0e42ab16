"""`rowloom export OUT_DIR -o file.jsonl`: a finished run's rows as JSONL (chat format for fine-tuning, or plain).

Registered in the main CLI with one line: `app.command("export")(export_cli.export)`; `export_app` runs it alone.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rowloom.engine.output_location import redact
from rowloom.engine.terms import FOLDER_TERMS
from rowloom.errors import RowloomError
from rowloom.interface import messages

EXIT_ERROR = 1


class ExportFormatChoice(StrEnum):
    chat_jsonl = "chat-jsonl"
    jsonl = "jsonl"


def export(
    out_dir: Annotated[
        str,
        typer.Argument(
            help="The --output folder of a run: a local path or a pyarrow.fs URI (file://…, s3://…), as run -o takes.",
            show_default=False,
            metavar="OUT_DIR",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.", show_default=False)],
    format: Annotated[ExportFormatChoice, typer.Option("--format", "-f", help="Line format.")] = (
        ExportFormatChoice.chat_jsonl
    ),
    messages_column: Annotated[
        str, typer.Option(help="chat-jsonl: the column holding the messages (e.g. from a schema_transform).")
    ] = "messages",
    system: Annotated[str | None, typer.Option(help="chat-jsonl: build messages, system from this column.")] = None,
    user: Annotated[str | None, typer.Option(help="chat-jsonl: build messages, user from this column.")] = None,
    assistant: Annotated[str | None, typer.Option(help="chat-jsonl: build messages, assistant from this column.")] = (
        None
    ),
) -> None:
    """Export a finished run as JSONL: `{"messages": [...]}` per row (chat-jsonl) or every column (jsonl)."""
    from rowloom.engine.export import MissingColumns, export_jsonl

    roles = {role: column for role, column in (("system", system), ("user", user), ("assistant", assistant)) if column}
    try:
        result = export_jsonl(
            out_dir, output, format=format.value, messages_column=messages_column, roles=roles, terms=FOLDER_TERMS
        )
    except MissingColumns as exc:
        if format is ExportFormatChoice.chat_jsonl and not roles:  # the default format on a run without messages
            messages.error(
                f"{redact(out_dir)} has no column {messages_column!r} to export as chat-jsonl; build the messages from "
                "columns with --user COLUMN --assistant COLUMN (and --system COLUMN), or export every column "
                f"with -f jsonl (its columns: {', '.join(exc.available)})"
            )
        else:
            messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    except RowloomError as exc:
        messages.error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
    left_out = f" ({result.rows_left_out} rows left out: a message without content)" if result.rows_left_out else ""
    messages.result(f"wrote {result.records} records to {output}{left_out}")


export_app = typer.Typer(add_completion=False, help="Export a finished run as JSONL.", rich_markup_mode=None)
export_app.command()(export)
