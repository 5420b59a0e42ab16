"""What click itself prints for `rowloom`: help laid out without breaking a word at a hyphen, and a usage
mistake (a missing option, a bad value, an unknown command) as one `error:` line, exit 2, like every other message.

Owns the root group's class (`RowloomGroup`); it must not change what a command does, only how click speaks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from typer.core import TyperGroup

try:  # typer 0.29+ carries its own copy of click, and its commands use that copy's classes
    from typer._click import core, exceptions, formatting
except ImportError:  # an older typer runs on click itself
    from click import core, exceptions, formatting  # type: ignore[no-redef]

from rowloom.interface import messages

EXIT_USAGE = 2  # click's status for a usage mistake, kept

# textwrap breaks after a hyphen (`--error-` / `rate`, `[default: bench-` / `local]`): while click wraps, every
# hyphen is this non-breaking one (one column wide too), and the finished text gets its hyphens back.
_GLUE = "\u2011"


def _glue(text: str) -> str:
    return text.replace("-", _GLUE)


class WholeWordsFormatter(formatting.HelpFormatter):
    """click's plain help layout, except that a line never ends inside a hyphenated word."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        # typer writes a required argument as `{CONFIG}`; click's (and every man page's) way is the bare name.
        super().write_usage(prog, _glue(re.sub(r"\{([^{}\s]+)\}", r"\1", args)), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_glue(text))

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, _glue(text)) for term, text in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_GLUE, "-")


class _Context(core.Context):
    formatter_class = WholeWordsFormatter


class UsageMistake(exceptions.ClickException):
    """A usage error said as one `error:` line that names the help to read."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        messages.error(self.message)


def usage_line(exc: exceptions.UsageError) -> str:
    """`missing option '--num-records' / '-n'; see rowloom run --help` for click's multi-line usage error."""
    message = exc.format_message().strip()
    message = message.replace("Value error, ", "")  # pydantic's prefix on a value typer checked with it
    message = re.sub(r"\.?\s+Did you mean (.*?)\??$", r" (did you mean \1?)", message)
    message = re.sub(r"(: |\()([A-Z])(?=[a-z])", lambda m: m[1] + m[2].lower(), message)  # `: Input should…`
    message = message.rstrip(".")
    message = message[:1].lower() + message[1:]
    if exc.ctx is not None:
        message += f"; see {exc.ctx.command_path} --help"
    return message


def _one_line(exc: exceptions.UsageError) -> exceptions.ClickException:
    if isinstance(exc, getattr(exceptions, "NoArgsIsHelpError", ())):  # `rowloom` alone: its help is the answer
        return exc
    return UsageMistake(usage_line(exc))


def _use_formatter(command: core.Command) -> None:
    command.context_class = _Context
    for sub in getattr(command, "commands", {}).values():
        _use_formatter(sub)


class RowloomGroup(TyperGroup):
    """The `rowloom` group: every command's help and usage errors go through this module's layout."""

    context_class = _Context

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _use_formatter(self)  # typer builds the command tree anew on each call; this runs before any parsing
        return super().main(*args, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> core.Context:
        try:
            return super().make_context(*args, **kwargs)
        except exceptions.UsageError as exc:  # `rowloom --bogus`
            raise _one_line(exc) from None

    def invoke(self, ctx: core.Context) -> Any:
        try:
            return super().invoke(ctx)
        except exceptions.UsageError as exc:  # an unknown command, or a subcommand's missing option or bad value
            raise _one_line(exc) from None
