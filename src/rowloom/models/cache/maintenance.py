"""What a cache folder holds, and clearing it (all of it, or the entries stored before a time): `rowloom cache`.

Works on the file while runs may use it: deletes are ordinary transactions, and the space is given back only when
no other connection is reading (VACUUM needs the file to itself; it is skipped when busy).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rowloom.models.cache.store import FILE_NAME, connect, used_bytes

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """Seconds of `30m`, `12h`, `7d`, `2w` (s, m, h, d, w); ValueError saying the form otherwise."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration; give a number and a unit, e.g. 45s, 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class CacheStats:
    """A cache file's entries, the bytes of its pages in use (what the size bound holds), the file's size on disk
    (its write-ahead log and free pages too) and when its entries were stored."""

    path: Path
    entries: int
    stored_bytes: int
    file_bytes: int
    oldest: float | None  # epoch seconds
    newest: float | None


def cache_stats(folder: Path) -> CacheStats | None:
    """What `folder`'s cache holds; None when there is no cache file."""
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return None
    with contextlib.closing(connect(path, busy_s=10.0)) as db:
        entries, oldest, newest = db.execute("SELECT count(*), min(created), max(created) FROM replies").fetchone()
        stored = used_bytes(db)
    size = sum(p.stat().st_size for p in path.parent.glob(f"{FILE_NAME}*") if p.is_file())
    return CacheStats(path, entries, stored, size, oldest, newest)


def clear_cache(folder: Path, older_than_s: float | None = None) -> int:
    """Delete every entry (or those stored more than `older_than_s` ago); the entries deleted."""
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return 0
    with contextlib.closing(connect(path, busy_s=30.0)) as db:
        if older_than_s is None:
            deleted = db.execute("DELETE FROM replies").rowcount
        else:
            deleted = db.execute("DELETE FROM replies WHERE created < ?", (time.time() - older_than_s,)).rowcount
        with contextlib.suppress(sqlite3.OperationalError):  # another run reading: its space is reused, not returned
            db.execute("PRAGMA busy_timeout = 0")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return deleted
