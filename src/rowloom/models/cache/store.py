"""`ReplyStore`: chat replies in one SQLite file (WAL mode), looked up on the event loop, written by a thread.

Each row holds a reply with a CRC-32 of its key and bytes: a damaged or truncated row is a miss (refetched and
overwritten), never a reply. A filter of the keys in the file (kept by the writer thread, which reads back what it
and other processes wrote) answers most misses without a read. The size is the file's own pages in use, so
several processes sharing the folder agree on it; beyond `max_bytes` the least recently used rows go. Knows
replies as bytes and keys, not what asked for them.

The file's layout is `SCHEMA_VERSION` (SQLite's `user_version`); a file of layout 2 is upgraded in place, one of
an older layout is emptied and rebuilt when opened (its replies are fetched again, with one warning), one of a
newer layout is not used.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import threading
import time
import warnings
import zlib
from collections import deque
from itertools import chain
from pathlib import Path

import orjson

from rowloom.errors import RowloomWarning
from rowloom.models.cache.key_filter import KeyFilter
from rowloom.models.types import ChatResponse, Usage

FILE_NAME = "replies.sqlite3"
#: The layout of the file (its `PRAGMA user_version`): bump it when the tables change. 1 (user_version 0): rows
#: under a unique index of the 16-byte key. 2: under a unique index of an 8-byte integer of the key (a third of
#: the writer's cost per insert went to the blob index), the key kept whole in the row and compared on read. 3: the
#: same rows, without the byte total kept by triggers (a quarter of the insert's cost): the size bound is the
#: file's pages in use. A file of layout 2 is upgraded in place, its replies kept.
SCHEMA_VERSION = 3
#: A hit moves its row up the LRU order at most this often (seconds): a touch is a write.
TOUCH_EVERY_S = 60.0
_BATCH = 2000  # writes per transaction at most
#: The writer gathers writes this long (seconds) after the first, or until `_BATCH` are queued, before committing
#: them: a transaction's fixed cost (its statements, the index and total pages it rewrites, a cold CPU cache for a
#: thread that wakes briefly) is paid once per gathering, and in a run it was most of a row's cost: 22 µs of the
#: writer's CPU per reply with gatherings of 0.2 s (~80 replies each), 13 µs with 1 s, 6.6 µs in transactions of
#: 2,000 alone (see docs/cache.md). Lookups see queued replies meanwhile; a killed process loses at most this long
#: of replies, which the next run fetches again.
_GATHER_S = 1.0
#: An idle writer reads the keys other processes stored this often (seconds), so their replies are found here.
_REFRESH_S = 2.0
_SCAN_ROWS = 100_000  # keys read per query at most
# The keys stored after a row id, as one hex string: one statement step, where reading them row by row would hand
# the GIL to the event loop and back once per row (the sqlite3 module releases it around every step).
_KEYS_AFTER = (
    "SELECT max(id), group_concat(hex(key), '') FROM "
    "(SELECT id, key FROM replies WHERE id > ? AND length(key) = 16 ORDER BY id LIMIT ?)"
)
_MMAP_BYTES = 1 << 30
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_ROW_OVERHEAD = 48  # bytes a row costs beyond its key and payload, roughly (times, checksum, index entry)

# Rows sit in write order (a rowid table: appending is cheap, where a table keyed by random hashes splits pages on
# every insert); a hit's touch moves its row to the end, so the smallest ids are the least recently used. A row is
# found by `hash`, the key's last 8 bytes as a signed integer (`key_hash`): an integer index costs the writer less
# than one of 16-byte blobs. Two keys with the same hash share one row (the later reply replaces the earlier) and
# a lookup compares the whole key, so a collision is a miss, never another request's reply; among a million stored
# keys some two share a hash with probability about n²/2⁶⁵ ≈ 3·10⁻⁸. The bytes the file holds are its pages in
# use (`used_bytes`): two pragmas, where a byte total kept by triggers cost every insert a quarter of its time.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS replies (
        id INTEGER PRIMARY KEY, hash INTEGER NOT NULL UNIQUE, key BLOB NOT NULL, payload BLOB NOT NULL,
        checksum INTEGER NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_COLUMNS = "hash, key, payload, checksum, size, created, used"
_ROW = "(" + ", ".join(["?"] * len(_COLUMNS.split(","))) + ")"
_UPSERT = (
    f"INSERT INTO replies ({_COLUMNS}) VALUES {{rows}} ON CONFLICT(hash) DO UPDATE SET key = excluded.key, "
    "payload = excluded.payload, checksum = excluded.checksum, size = excluded.size, created = excluded.created, "
    "used = excluded.used"
)
_ROWS_PER_STATEMENT = 500  # 3,500 parameters: within SQLite's bound (32,766)
_LOOKUP = "SELECT key, payload, checksum, used FROM replies WHERE hash = ?"
_TOUCH = "UPDATE replies SET id = (SELECT max(id) FROM replies) + 1, used = ? WHERE hash = ? AND key = ?"
_HASH = struct.Struct("<8xq").unpack_from  # the key's last 8 bytes, as a signed 64-bit integer
_LAST_ID = "SELECT coalesce(max(id), 0) FROM replies"
_dumps, _crc32 = orjson.dumps, zlib.crc32


class CacheUnavailable(Exception):
    """The cache file cannot be opened or created; the message says why, for the warning."""


def key_hash(key: bytes) -> int:
    """The integer a key's row is found by: its last 8 bytes (keys are uniform hashes already)."""
    return _HASH(key)[0]


def stored_row(key: bytes, reply: ChatResponse, now: float) -> tuple:
    """The values of `_COLUMNS` for a reply stored at `now`, its checksum over the key too (a row moved to another
    key fails it). The blobs are bound as `bytearray`: the sqlite3 module binds the exact int, float, str and
    bytearray types directly, but puts a `bytes` value through its adaptation protocol first (a registry lookup
    and two failed attribute lookups, one raising and clearing an AttributeError): an eighth of the writer's
    instructions per stored reply."""
    u = reply.usage
    payload = _dumps(
        [
            reply.text,
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.reasoning_tokens,
            u.known,
            reply.finish_reason,
        ]
    )
    size = len(key) + len(payload) + _ROW_OVERHEAD
    return (_HASH(key)[0], bytearray(key), bytearray(payload), _crc32(payload, _crc32(key)), size, now, now)


def decode(payload: bytes) -> ChatResponse:
    """The reply of a payload whose checksum matched."""
    text, prompt, completion, cached, reasoning, known, finish = orjson.loads(payload)
    return ChatResponse(text=text, usage=Usage(prompt, completion, cached, reasoning, known), finish_reason=finish)


def used_bytes(conn: sqlite3.Connection) -> int:
    """The bytes of the file's pages in use (its free pages left out), as this connection sees them: what the
    size bound holds."""
    ((pages,),) = conn.execute("PRAGMA page_count").fetchall()
    ((free,),) = conn.execute("PRAGMA freelist_count").fetchall()
    ((size,),) = conn.execute("PRAGMA page_size").fetchall()
    return (pages - free) * size


def connect(path: Path, *, busy_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (no read transaction left open to hold back WAL checkpoints)."""
    conn = sqlite3.connect(path, timeout=busy_s, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Pages read through a memory map: after another connection's commit a lookup re-reads without a copy.
        conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


class ReplyStore:
    """Lookups (`get`) run on the caller's thread; `put` and LRU touches queue for the writer thread."""

    def __init__(self, folder: Path, *, max_bytes: int, writable: bool = True):
        """Open (creating) `folder/replies.sqlite3`; raises `CacheUnavailable` when it cannot."""
        self.path = Path(folder) / FILE_NAME
        self.max_bytes = max_bytes
        self.writable = writable
        self._problems: deque[str] = deque()
        self._told: set[str] = set()
        #: Replies dropped at opening because the file had an older layout (None when it had this one).
        self.dropped_old: int | None = None
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorname", "") not in _DAMAGED:
                    raise
                aside = self._set_aside()  # a damaged file (a truncated tail, a bad header): start a new one
                self._open()
                kept = self._salvage(aside)
                self._problem("damaged", f"was damaged ({exc}): {kept} replies kept, the others are fetched again")
        except (OSError, sqlite3.Error) as exc:
            raise CacheUnavailable(str(exc)) from None
        self._pending: dict[bytes, ChatResponse] = {}  # queued, not yet committed: still answers lookups
        # Keys the file may hold (None until the writer thread has read them, or after a read failed: every lookup
        # reads then); only the writer thread changes it. `_seen_id` is the largest row id it has read.
        self._filter: KeyFilter | None = None
        self._seen_id = 0
        # Writes for the writer thread, which wakes once per gathering interval, not once per write: replies to
        # store, (key, reply), and hits to move up the LRU order, (key, when).
        self._writes: deque[tuple[bytes, ChatResponse]] = deque()
        self._touches: deque[tuple[bytes, float]] = deque()
        self._wake = threading.Event()
        self._full = threading.Event()  # `_BATCH` writes are queued: commit without waiting out the gathering
        self._closing = False
        self._thread = threading.Thread(target=self._write_loop, name="rowloom-cache-writer", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        self._writer = connect(self.path, busy_s=30.0)
        try:  # one transaction: processes opening the folder at once wait for each other (busy timeout)
            self._writer.execute("BEGIN IMMEDIATE")
            dropped = self._upgrade_layout()
            for statement in _SCHEMA:
                self._writer.execute(statement)
            self._writer.execute("COMMIT")
            self._writer.execute(_LAST_ID).fetchall()  # a damaged file fails here, not at the first write
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("ROLLBACK")
            self._writer.close()
            raise
        self._reader = connect(self.path, busy_s=1.0)
        if dropped is not None:
            self.dropped_old = dropped
            self._problem(
                "layout", f"was written by an older rowloom: its {dropped} replies were dropped and are fetched again"
            )

    def _upgrade_layout(self) -> int | None:
        """In the opening transaction: bring a file of an older layout to this one. Layout 2's rows are this
        layout's: only its byte total (a table and its triggers) goes. Older layouts' tables are dropped (their
        triggers go with them). The replies dropped, or None when none were (a new file, this layout, layout 2).
        A newer layout is not touched: the file cannot be used (`CacheUnavailable`)."""
        (version,) = self._writer.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return None
        if version > SCHEMA_VERSION:
            raise CacheUnavailable(
                f"it was written by a newer rowloom (cache layout {version}; this one reads {SCHEMA_VERSION})"
            )
        tables = {name for (name,) in self._writer.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables & {"replies", "meta"}:
            return None  # a new file
        if version == 2:
            for trigger in ("replies_added", "replies_removed", "replies_resized"):
                self._writer.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            self._writer.execute("DROP TABLE IF EXISTS meta")
            return None
        count = 0
        if "replies" in tables:
            (count,) = self._writer.execute("SELECT count(*) FROM replies").fetchone()
        self._writer.execute("DROP TABLE IF EXISTS replies")
        self._writer.execute("DROP TABLE IF EXISTS meta")
        return count

    def _set_aside(self) -> Path:
        """Rename the damaged file (and its WAL and shared-memory files) out of the way; its new name."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                self.path.with_name(self.path.name + suffix).rename(aside.with_name(aside.name + suffix))
        return aside

    def _salvage(self, aside: Path) -> int:
        """Copy the readable rows of the damaged file set aside (a scan stops at the first bad page) into the new
        one, then delete it; the rows kept."""
        rows: list[tuple] = []
        try:
            with contextlib.closing(sqlite3.connect(f"{aside.as_uri()}?mode=ro", uri=True)) as damaged:
                for row in damaged.execute(f"SELECT {_COLUMNS} FROM replies"):
                    rows.append(row)
        except sqlite3.Error:
            pass  # what was read before the damage is kept
        with _transaction(self._writer):
            _upsert(self._writer, rows)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                aside.with_name(aside.name + suffix).unlink()
        return len(rows)

    # ------------------------------------------------------------ the event loop's side

    def get(self, key: bytes) -> ChatResponse | None:
        """The stored reply of `key`, or None (absent, damaged, or the file unreadable: each a miss)."""
        if self._problems:
            self._tell()
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        known = self._filter
        if known is not None and key not in known:
            return None
        try:
            rows = self._reader.execute(_LOOKUP, _HASH(key)).fetchall()
        except sqlite3.Error as exc:
            self._problem("unreadable", f"cannot be read ({exc}); its replies are fetched again")
            self._tell()
            return None
        if not rows:
            return None
        stored_key, payload, checksum, used = rows[0]
        if stored_key != key:
            return None  # another key with the same 64-bit hash
        if not isinstance(payload, bytes) or zlib.crc32(payload, zlib.crc32(key)) != checksum:
            self._problem("damaged", "holds damaged entries (checksum mismatch); they are fetched again")
            self._tell()
            return None
        try:
            reply = decode(payload)
        except (ValueError, TypeError):
            return None
        now = time.time()
        if self.writable and now - used > TOUCH_EVERY_S:
            self._touches.append((key, now))
            if not self._wake.is_set():
                self._wake.set()
        return reply

    def put(self, key: bytes, reply: ChatResponse) -> None:
        """Store a reply (queued: the writer thread commits it; lookups see it at once)."""
        if self.writable:
            self._pending[key] = reply
            writes = self._writes
            writes.append((key, reply))
            if not self._wake.is_set():
                self._wake.set()
            elif len(writes) >= _BATCH and not self._full.is_set():
                self._full.set()

    def close(self) -> None:
        """Commit what is queued and stop the writer (blocks: call it off the event loop)."""
        self._closing = True
        self._wake.set()
        self._full.set()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self._reader.close()
        self._tell()

    # ------------------------------------------------------------ the writer thread

    def _write_loop(self) -> None:
        try:
            self._rebuild_filter()
            while True:
                if not self._wake.wait(_REFRESH_S):
                    self._read_new_keys()  # idle: what other processes stored
                    continue
                self._full.wait(_GATHER_S)  # the writes of the interval in one transaction (none when closing)
                self._full.clear()
                self._wake.clear()  # before draining: a write queued from here on sets it again
                closing = self._closing
                writes, touches = self._writes, self._touches
                while writes or touches:
                    puts = [writes.popleft() for _ in range(min(_BATCH, len(writes)))]
                    self._write(puts, [touches.popleft() for _ in range(min(_BATCH, len(touches)))])
                if closing:
                    return
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._writer.close()

    def _write(self, batch: list[tuple[bytes, ChatResponse]], touched: list[tuple[bytes, float]]) -> None:
        """Commit replies to store and hits' touches in one transaction."""
        now = time.time()
        rows = [stored_row(key, reply, now) for key, reply in batch]
        try:
            with _transaction(self._writer):
                (before,) = self._writer.execute(_LAST_ID).fetchone()
                _upsert(self._writer, rows)
                if touched:
                    self._writer.executemany(_TOUCH, [(when, _HASH(key)[0], key) for key, when in touched])
                self._evict()
                (after,) = self._writer.execute(_LAST_ID).fetchone()
            # Into the filter before the replies leave `_pending`: a lookup finds each in one or the other.
            known = self._filter
            if known is not None and before == self._seen_id:
                # Nobody wrote since the keys were last read: the rows after `before` are this batch's puts and
                # touched rows (whose keys were found, so are in the filter). Added from here, not read back.
                known.add_packed(b"".join([key for key, _ in batch]))
                self._seen_id = after
                if known.full:
                    self._rebuild_filter()
            elif before < self._seen_id:  # rows with the largest ids were deleted (a clear): ids are reused
                self._rebuild_filter()
            else:
                self._read_new_keys()  # what other processes stored, and this batch
        except sqlite3.Error as exc:
            self._problem("unwritable", f"cannot be written ({exc}); replies of this run may not be kept")
        finally:
            pending = self._pending
            for key, reply in batch:
                if pending.get(key) is reply:
                    del pending[key]

    def _rebuild_filter(self) -> None:
        """A filter of every key in the file, sized for twice as many (read in id order: appends come after)."""
        try:
            (count,) = self._writer.execute("SELECT count(*) FROM replies").fetchone()
            known = KeyFilter(2 * count)
            seen = self._add_keys_after(known, 0)
        except sqlite3.Error:
            self._filter = None  # every lookup reads the file
            return
        self._filter, self._seen_id = known, seen

    def _read_new_keys(self) -> None:
        """Add the keys stored since the last read (this process's commits, other processes', touched rows)."""
        known = self._filter
        if known is None:
            return
        try:
            self._seen_id = self._add_keys_after(known, self._seen_id)
        except sqlite3.Error:
            self._filter = None  # a key it missed would read as absent: read the file instead
            return
        if known.full:
            self._rebuild_filter()

    def _add_keys_after(self, known: KeyFilter, seen: int) -> int:
        """Add every key with a row id above `seen` to `known`; the largest id read."""
        while True:
            last, keys = self._writer.execute(_KEYS_AFTER, (seen, _SCAN_ROWS)).fetchone()
            if last is None:
                return seen
            known.add_packed(bytes.fromhex(keys))
            seen = last

    def _evict(self) -> None:
        """Drop the least recently used rows while the file's pages in use pass the bound, down to 90% of it."""
        used = used_bytes(self._writer)
        if used <= self.max_bytes:
            return
        target = int(self.max_bytes * 0.9)
        while used > target:
            (count,) = self._writer.execute("SELECT count(*) FROM replies").fetchone()
            if not count:
                return
            # As many of the oldest rows as the bytes to give back hold at the file's mean bytes per row (the
            # pages a delete empties go to the free list: pages in use fall as rows go).
            self._writer.execute(
                "DELETE FROM replies WHERE id IN (SELECT id FROM replies ORDER BY id LIMIT ?)",
                ((used - target) * count // used + 1,),
            )
            used = used_bytes(self._writer)

    # ------------------------------------------------------------ warnings, told once each

    def _problem(self, kind: str, message: str) -> None:
        if kind not in self._told:
            self._told.add(kind)
            self._problems.append(f"the reply cache {self.path} {message}")

    def _tell(self) -> None:
        while self._problems:
            warnings.warn(self._problems.popleft(), RowloomWarning, stacklevel=3)


def _upsert(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert or replace `rows`, hundreds per statement: the sqlite3 module releases the GIL around each statement
    step, and per-row steps from this thread would hand the GIL back and forth with the event loop's."""
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        sql = _UPSERT.format(rows=",".join([_ROW] * len(chunk)))
        conn.execute(sql, list(chain.from_iterable(chunk)))


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection):
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
