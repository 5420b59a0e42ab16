"""What every CLI message looks like: `error: …` and `warning: …` on stderr, results (`wrote …`) on stdout.

One convention, uv's and ruff's: a lowercase label, then one line, lowercase too, that says what happened and
what to do. Every command prints through these functions, so the convention lives here and nowhere else; the
layout (no hard wrap into a file or pipe) is the console's (`interface.output`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from rich.text import Text

from rowloom.engine.output_location import redact
from rowloom.errors import RowloomWarning
from rowloom.interface.output import CliConsole, terminal_text

#: Where problems and status lines go; what a command produced goes to `stdout`.
stderr = CliConsole(stderr=True, highlight=False)
stdout = CliConsole(highlight=False)


def _line(message: str) -> Text:
    # Never markup, never raw control characters: a path, a seed value or a provider's words may hold brackets
    # rich would read as styles (or a stray `[/bold]` it would fail on) and escape sequences a terminal would run.
    # Never a credential in a URI either (a library's error may quote `s3://KEY:SECRET@…` or `?sas_token=…`).
    return terminal_text(redact(message))


def _labelled(label: str, style: str, message: str) -> None:
    stderr.print(Text.assemble((f"{label}:", style), " ", _line(message)))


def said(message: str) -> str:
    """A library's sentence (pydantic's `Value error, …` / `Input should be …`) in the CLI's lowercase voice."""
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def error(message: str, *details: str) -> None:
    """`error: MESSAGE` on stderr, then `details` line by line as they are (a traceback's frames)."""
    _labelled("error", "bold red", message)
    for line in details:
        stderr.print(_line(line))


def warning(message: str) -> None:
    """`warning: MESSAGE` on stderr: something the user may want to fix; the command goes on."""
    _labelled("warning", "bold yellow", message)


def status(message: str) -> None:
    """A line on stderr about what the command is doing (a simulator started, metrics served)."""
    stderr.print(_line(message))


def result(message: str) -> None:
    """What the command produced (`wrote …`), on stdout."""
    stdout.print(_line(message))


@contextlib.contextmanager
def engine_warnings() -> Iterator[None]:
    """Within: every `RowloomWarning` the engine gives prints as a `warning: …` line (others as Python shows them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RowloomWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, RowloomWarning):
                warning(str(message))
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
