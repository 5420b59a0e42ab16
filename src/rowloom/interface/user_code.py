"""How the CLI shows a bug in a user's custom column: the exception, the user's own frames, the column.

Owns picking the frames that are the user's (not rowloom's, not Python's own machinery such as the worker thread
a sync function runs in) out of the traceback; the wording of the lines is `messages`'s convention.
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

import rowloom
from rowloom.errors import UserCodeError

_PATHS = sysconfig.get_paths()
_ROWLOOM = (Path(rowloom.__file__).resolve().parent,)
_STDLIB = tuple({Path(_PATHS[k]).resolve() for k in ("stdlib", "platstdlib")})
_LIBRARIES = tuple({Path(_PATHS[k]).resolve() for k in ("purelib", "platlib")})  # may lie inside the stdlib


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _is_users(frame: traceback.FrameSummary) -> bool:
    if frame.filename.startswith("<"):  # "<frozen runpy>", "<string>": nothing a user can open
        return False
    path = Path(frame.filename).resolve()
    if _under(path, _ROWLOOM):
        return False
    return _under(path, _LIBRARIES) or not _under(path, _STDLIB)


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback in the user's files (libraries they call included), outermost first."""
    return [frame for frame in traceback.extract_tb(exc.__traceback__) if _is_users(frame)]


def describe(error: UserCodeError) -> tuple[str, list[str]] | None:
    """(first line, following lines) showing a custom column's crash as `error: TYPE: MESSAGE`, the user's frames
    as Python prints them, then the column; None when `error` carries no exception of the user's."""
    cause = error.__cause__
    if cause is None or error.column is None:
        return None
    frames = user_frames(cause)
    lines = []
    if frames:
        lines.append("Traceback (most recent call last; rowloom's own frames left out):")
        lines += [line for text in traceback.format_list(frames) for line in text.rstrip("\n").split("\n")]
    function = f" ({error.function})" if error.function else ""
    lines.append(
        f"raised by the function of custom column {error.column!r}{function}: fix it, or raise rowloom.DropRow "
        "to drop a row on purpose"
    )
    head = "".join(traceback.format_exception_only(cause)).strip().replace("\n", " ")
    return head, lines
