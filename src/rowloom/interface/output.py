"""How the CLI writes: consoles that never hard-wrap into a file or pipe, tables that fit or become lists, and
text from users, seeds and models made safe for a terminal (`terminal_text`).

Owns layout only (width, wrapping, table or list); what a message says belongs to the command printing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Narrowest column a preview table gives a value before it shows one block per record instead.
MIN_PREVIEW_COLUMN = 18

#: Characters a terminal acts on instead of showing: C0 controls but tab and newline (ESC starts escape sequences:
#: colours, hyperlinks, clearing the screen, setting the title; CR and backspace overwrite what was shown), DEL,
#: C1 controls (CSI and OSC in one byte), and the bidirectional overrides that reorder what a reader sees.
_CONTROLS = dict.fromkeys(
    [
        *(c for c in range(0x20) if c not in (0x09, 0x0A)),
        *range(0x7F, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
)


def strip_controls(text: str, *, newlines: bool = True) -> str:
    """`text` without the characters a terminal would act on (escape sequences lose their ESC and show as text);
    tab and newline stay when `newlines` (a one-line field turns each into a space)."""
    cleaned = text.translate(_CONTROLS)
    return cleaned if newlines else cleaned.replace("\n", " ").replace("\t", " ")


def terminal_text(text: object, style: str = "", *, newlines: bool = True) -> Text:
    """What a user, a seed file or a model wrote, ready to print: control characters stripped (`strip_controls`)
    and never read as rich markup (`[link=…]`, `[/bold]` show as they are). Every such text goes through here."""
    return Text(strip_controls(str(text), newlines=newlines), style=style)


class CliConsole(Console):
    """A rich Console that wraps text only on a terminal, where a reader sees its width.

    In a file, pipe or CI log a message stays one line however long it is (a log viewer wraps it, and a path or
    a command in it can be copied whole). `terminal` overrides the detection (tests); otherwise it is whether
    the file is a tty right now, so FORCE_COLOR in a CI log still gets colour but no wrapping.
    """

    def __init__(self, *, terminal: bool | None = None, **kwargs: Any):
        self._terminal = terminal
        super().__init__(**kwargs)

    @property
    def on_terminal(self) -> bool:
        """Whether a person reads this output at the console's width (not a file or a pipe)."""
        if self._terminal is not None:
            return self._terminal
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty is not None and isatty())
        except ValueError:  # a closed file at interpreter exit
            return False

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return not self.on_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        pass  # decided per print by where the output goes (rich's __init__ assigns a fixed default)


def on_terminal(console: Console) -> bool:
    """Whether `console` writes to a terminal a person reads (any rich Console, a `CliConsole` or not)."""
    return console.on_terminal if isinstance(console, CliConsole) else console.is_terminal


def plural(count: int, noun: str) -> str:
    """`1 row`, `2 rows`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class Grid:
    """Rows of strings under headers, and how to show them where a table does not fit.

    `blocks` is one (heading, lines) per block; by default one block per row, headed by its first cell, with a
    `header: value` line for every other non-empty cell.
    """

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    blocks: Sequence[tuple[str, Sequence[str]]] | None = None

    def as_blocks(self) -> Sequence[tuple[str, Sequence[str]]]:
        """The blocks of the fallback list."""
        if self.blocks is not None:
            return self.blocks
        return [
            (row[0], [f"{h}: {v}" for h, v in zip(self.headers[1:], row[1:], strict=True) if v != ""])
            for row in self.rows
        ]

    def table(self) -> Table:
        """The rich table: no cell is ever wrapped or cut (`print_grid` only shows it where it fits)."""
        table = Table(title=terminal_text(self.title) if self.title else None)
        for header in self.headers:
            table.add_column(terminal_text(header), no_wrap=True, overflow="ignore")
        for row in self.rows:
            table.add_row(*(terminal_text(cell) for cell in row))
        return table

    def width(self) -> int:
        """Columns the table takes: each column its widest cell plus padding, and the borders between them."""
        widths = [cell_len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row, strict=True)]
        return sum(w + 2 for w in widths) + len(widths) + 1

    def markdown(self) -> str:
        """The title (when there is one) and a Markdown table."""

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [self.title, ""] if self.title else []
        lines += [line(self.headers), "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += [line(row) for row in self.rows]
        return "\n".join(lines)


def print_grid(console: Console, grid: Grid) -> None:
    """A table on a terminal wide enough for it, one block per row on a narrower one, Markdown into a file."""
    if not on_terminal(console):
        console.print(terminal_text(grid.markdown()), highlight=False, soft_wrap=True)
    elif grid.width() <= console.width:
        console.print(grid.table(), soft_wrap=False)
    else:
        print_blocks(console, grid.title, grid.as_blocks())


def print_blocks(console: Console, title: str, blocks: Sequence[tuple[str, Sequence[str]]]) -> None:
    """A title, then each block: its heading, then its lines indented (continuation lines of a value too)."""
    if title:
        console.print(terminal_text(title, "bold"))
    for i, (heading, lines) in enumerate(blocks):
        if title or i:
            console.print()
        console.print(terminal_text(heading, "bold"))
        for entry in lines:
            console.print(terminal_text("  " + entry.replace("\n", "\n    ")))


def print_records(console: Console, columns: Sequence[str], records: Sequence[Sequence[str]]) -> None:
    """Records as a table when each column gets a readable width on a terminal, else one block per record
    with a `column: value` line per column."""
    if on_terminal(console) and console.width >= len(columns) * (MIN_PREVIEW_COLUMN + 3) + 1:
        table = Table(show_lines=True)
        for name in columns:
            table.add_column(terminal_text(name, newlines=False), overflow="fold", max_width=60)
        for record in records:
            table.add_row(*(terminal_text(value) for value in record))
        console.print(table, soft_wrap=False)
        return
    blocks = [
        (f"record {i}", [f"{name}: {value}" for name, value in zip(columns, record, strict=True)])
        for i, record in enumerate(records, 1)
    ]
    print_blocks(console, "", blocks)
