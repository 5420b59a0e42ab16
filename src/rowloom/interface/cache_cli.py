"""`rowloom cache stats|clear`: what the reply cache holds, and clearing it (`--older-than 7d`: only old entries).

Registered in the main CLI with one line: `app.add_typer(cache_app, name="cache")`.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from rowloom.config.cache import CacheConfig
from rowloom.interface import messages

EXIT_ERROR = 1

CacheOption = Annotated[
    str | None,
    typer.Option("--cache", help="Cache folder (default: $ROWLOOM_CACHE_DIR, else ~/.cache/rowloom), as run takes it."),
]

cache_app = typer.Typer(
    add_completion=False,
    help="The reply cache across runs: what it holds, and clearing it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _folder(cache: str | None) -> Path:
    from rowloom.models.cache import default_folder

    return Path(cache).expanduser() if cache else default_folder()


def _replies(count: int) -> str:
    return f"{count:,} {'reply' if count == 1 else 'replies'}"


def _when(epoch: float | None) -> str:
    return "—" if epoch is None else datetime.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


@cache_app.command()
def stats(cache: CacheOption = None) -> None:
    """How many replies the cache holds, their size, and when they were stored."""
    from rowloom.models.cache.maintenance import cache_stats

    folder = _folder(cache)
    try:
        found = cache_stats(folder)
    except (OSError, sqlite3.Error) as exc:  # a damaged or locked file
        messages.error(f"cannot read the reply cache in {folder}: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    if found is None:
        messages.result(f"no reply cache in {folder}")
        return
    mb = 2**20
    messages.result(
        f"{found.path}: {_replies(found.entries)}, {found.stored_bytes / mb:.1f} MiB stored "
        f"(bound {CacheConfig().max_size_mb:g} MiB unless run.cache.max_size_mb says otherwise), "
        f"{found.file_bytes / mb:.1f} MiB on disk; stored from {_when(found.oldest)} to {_when(found.newest)}"
    )


@cache_app.command()
def clear(
    cache: CacheOption = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Only replies stored longer ago than this: 30m, 12h, 7d, 2w.")
    ] = None,
) -> None:
    """Delete the cache's replies (all, or those older than --older-than); later runs ask the provider again."""
    from rowloom.models.cache.maintenance import clear_cache, parse_duration

    folder = _folder(cache)
    try:
        seconds = parse_duration(older_than) if older_than is not None else None
    except ValueError as exc:
        messages.error(f"--older-than: {exc}")
        raise typer.Exit(2) from None
    try:
        deleted = clear_cache(folder, seconds)
    except (OSError, sqlite3.Error) as exc:  # a damaged or locked file
        messages.error(f"cannot clear the reply cache in {folder}: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    older = f" stored more than {older_than} ago" if older_than else ""
    messages.result(f"deleted {_replies(deleted)}{older} from the reply cache in {folder}")
