"""The reply cache's parts without a network: what the key depends on, the store's checksums, damage handling,
LRU bound, queued writes and key filter, and single flight's handling of a cancelled leader."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time

import pytest

from rowloom.config.cache import CacheConfig
from rowloom.errors import ConfigError, RowloomWarning
from rowloom.models.cache import ReplyStore, resolve
from rowloom.models.cache import store as store_module
from rowloom.models.cache.flight import SingleFlight
from rowloom.models.cache.key_filter import KeyFilter
from rowloom.models.cache.keys import request_key
from rowloom.models.cache.store import FILE_NAME
from rowloom.models.types import ChatRequest, ChatResponse, Usage

BASE = ChatRequest(
    model="m",
    messages=({"role": "user", "content": "hi"},),
    params={"temperature": 0.7, "max_tokens": 64},
    json_schema={"type": "object"},
    schema_name="review",
)


def keys(count: int) -> list[bytes]:
    return [i.to_bytes(16, "big") for i in range(count)]


def fill(folder, count: int, text: str = "x" * 100, **store) -> list[bytes]:
    store = ReplyStore(folder, max_bytes=store.get("max_bytes", 2**30))
    for key in keys(count):
        store.put(key, ChatResponse(text, Usage(3, 4)))
    store.close()
    return keys(count)


def test_key_changes_with_everything_that_decides_the_reply_and_nothing_else():
    base = request_key(BASE)
    variants = [
        ChatRequest(**{**_fields(BASE), "model": "other"}),
        ChatRequest(**{**_fields(BASE), "messages": (*BASE.messages, {"role": "user", "content": "fix it"})}),
        ChatRequest(**{**_fields(BASE), "params": {"temperature": 0.8, "max_tokens": 64}}),
        ChatRequest(**{**_fields(BASE), "params": {**BASE.params, "seed": 1}}),
        ChatRequest(**{**_fields(BASE), "json_schema": {"type": "array"}}),
        ChatRequest(**{**_fields(BASE), "schema_name": "other"}),
    ]
    found = {request_key(v) for v in variants}
    found |= {request_key(BASE, namespace="fresh"), request_key(BASE, provider="b"), request_key(BASE, sample="0:c:1")}
    assert base not in found and len(found) == len(variants) + 3
    reordered = ChatRequest(**{**_fields(BASE), "params": {"max_tokens": 64, "temperature": 0.7}})
    assert request_key(reordered) == base


def _fields(request: ChatRequest) -> dict:
    return {name: getattr(request, name) for name in ("model", "messages", "params", "json_schema", "schema_name")}


def test_a_stored_reply_reads_back_whole_and_queued_writes_answer_at_once(tmp_path):
    store = ReplyStore(tmp_path, max_bytes=2**20)
    reply = ChatResponse("text", Usage(10, 5, cached_tokens=2, reasoning_tokens=1), finish_reason="stop")
    store.put(b"k" * 16, reply)
    assert store.get(b"k" * 16) == reply  # before the writer committed it
    store.close()
    again = ReplyStore(tmp_path, max_bytes=2**20)
    assert again.get(b"k" * 16) == reply and again.get(b"z" * 16) is None
    again.close()


def test_damaged_rows_are_misses_and_a_warning_names_the_file(tmp_path):
    stored = fill(tmp_path, 50)
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("UPDATE replies SET payload = substr(payload, 1, 7) WHERE key < ?", (stored[5],))
    store = ReplyStore(tmp_path, max_bytes=2**20)
    with pytest.warns(RowloomWarning, match=f"{tmp_path / FILE_NAME}.*damaged entries"):
        found = [store.get(key) is not None for key in stored]
    assert found == [False] * 5 + [True] * 45
    store.put(stored[0], ChatResponse("fetched again"))  # the refetched reply replaces the damaged row
    store.close()
    store = ReplyStore(tmp_path, max_bytes=2**20)
    assert store.get(stored[0]).text == "fetched again"
    store.close()


def test_a_truncated_file_is_replaced_with_a_warning_naming_it(tmp_path):
    stored = fill(tmp_path, 2000)
    path = tmp_path / FILE_NAME
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) * 2 // 3)
    with pytest.warns(RowloomWarning, match=f"{path} was damaged"):
        store = ReplyStore(tmp_path, max_bytes=2**20)
        assert store.get(stored[-1]) is None
        store.put(stored[-1], ChatResponse("again"))
        store.close()
    store = ReplyStore(tmp_path, max_bytes=2**20)
    assert store.get(stored[-1]).text == "again"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_least_recently_used_replies_go_beyond_the_size_bound(tmp_path):
    store = ReplyStore(tmp_path, max_bytes=100_000)
    for key in keys(2000):  # ~170 bytes a row: far past the bound
        store.put(key, ChatResponse("x" * 100))
    store.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        (count,) = db.execute("SELECT count(*) FROM replies").fetchone()
        used = store_module.used_bytes(db)
    assert 0 < count < 2000 and used <= 100_000
    store = ReplyStore(tmp_path, max_bytes=100_000)
    assert store.get(keys(2000)[-1]) is not None and store.get(keys(2000)[0]) is None  # the newest stay
    store.close()


def test_mode_and_folder_come_from_the_environment_when_the_config_leaves_them(monkeypatch, tmp_path):
    monkeypatch.setenv("ROWLOOM_CACHE", "read")
    monkeypatch.setenv("ROWLOOM_CACHE_DIR", str(tmp_path))
    assert resolve(CacheConfig()).mode == "read" and resolve(CacheConfig()).path == str(tmp_path)
    assert resolve(CacheConfig(mode="off", path="/elsewhere")).model_dump(include={"mode", "path"}) == {
        "mode": "off",
        "path": "/elsewhere",
    }
    monkeypatch.delenv("ROWLOOM_CACHE")
    monkeypatch.delenv("ROWLOOM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve(CacheConfig()).mode == "readwrite"
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert resolve(CacheConfig()).path == str(tmp_path / "xdg" / "rowloom")
    monkeypatch.setenv("ROWLOOM_CACHE", "sometimes")
    with pytest.raises(ConfigError, match="ROWLOOM_CACHE"):
        resolve(CacheConfig())


async def test_followers_of_a_cancelled_leader_ask_again_themselves():
    flight: SingleFlight[str] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)  # the leader: cancelled below
        await release.wait()
        return "reply"

    leader = asyncio.create_task(flight.run(b"k", call))
    await asyncio.sleep(0)
    followers = [asyncio.create_task(flight.run(b"k", call)) for _ in range(3)]
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*followers)
    assert calls == 2 and sorted(shared for _, shared in results) == [False, True, True]
    assert len(flight) == 0
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_followers_get_the_leaders_error():
    flight: SingleFlight[str] = SingleFlight()

    async def fail() -> str:
        await asyncio.sleep(0.01)
        raise ValueError("no")

    results = await asyncio.gather(*(flight.run(b"k", fail) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3


def test_the_key_filter_never_loses_a_key_and_lets_few_absent_ones_through():
    rng = random.Random(7)
    present = [rng.randbytes(16) for _ in range(20_000)]
    absent = [rng.randbytes(16) for _ in range(20_000)]
    one_by_one, in_bulk = KeyFilter(20_000), KeyFilter(20_000)
    for start in range(0, len(present), 1000):  # below the bulk size: bits or-ed in place
        one_by_one.add_packed(b"".join(present[start : start + 1000]))
    in_bulk.add_packed(b"".join(present))  # marked in a byte array and packed
    assert all(key in one_by_one and key in in_bulk for key in present)
    assert one_by_one._bytes == in_bulk._bytes
    passed = sum(key in in_bulk for key in absent)
    assert passed / len(absent) < 0.02
    assert not in_bulk.full
    in_bulk.add_packed(b"".join(present * 4))
    assert in_bulk.full


def test_a_miss_is_answered_without_a_read_and_other_processes_replies_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "_REFRESH_S", 0.05)
    first = ReplyStore(tmp_path, max_bytes=2**30)
    reply = ChatResponse("stored elsewhere", Usage(3, 4), finish_reason="stop")
    try:
        _wait_for(lambda: first._filter is not None)
        reads = []
        reader = first._reader
        first._reader = _CountingConnection(reader, reads)
        assert first.get(b"k" * 16) is None
        assert reads == []  # the filter knew the key is not in the file
        other = ReplyStore(tmp_path, max_bytes=2**30)  # another process's store, on the same folder
        other.put(b"k" * 16, reply)
        other.close()
        _wait_for(lambda: first.get(b"k" * 16) is not None)
        assert first.get(b"k" * 16) == reply and reads
    finally:
        first.close()


class _CountingConnection:
    def __init__(self, connection, reads):
        self._connection, self._reads = connection, reads

    def execute(self, *args):
        self._reads.append(args)
        return self._connection.execute(*args)

    def close(self):
        self._connection.close()


def test_a_full_batch_of_writes_is_committed_without_waiting_out_the_gathering(tmp_path, monkeypatch):
    """The writer gathers writes for `_GATHER_S` or until `_BATCH` are queued: with a gathering far longer than
    the wait below, only a full batch can have made it commit."""
    monkeypatch.setattr(store_module, "_GATHER_S", 600.0)
    monkeypatch.setattr(store_module, "_BATCH", 50)
    store = ReplyStore(tmp_path, max_bytes=2**30)
    reply = ChatResponse("gathered", Usage(1, 1), finish_reason="stop")
    try:
        for i in range(50):
            store.put(i.to_bytes(16, "big"), reply)
        _wait_for(lambda: not store._pending)  # committed: a reply leaves the queue once it is in the file
        with sqlite3.connect(tmp_path / FILE_NAME) as db:
            assert db.execute("SELECT count(*) FROM replies").fetchone() == (50,)
    finally:
        store.close()


def _wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


_LAYOUT_1 = """
CREATE TABLE replies (
    id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, payload BLOB NOT NULL, checksum INTEGER NOT NULL,
    size INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('bytes', 0);
CREATE TRIGGER replies_added AFTER INSERT ON replies
    BEGIN UPDATE meta SET value = value + NEW.size WHERE name = 'bytes'; END;
"""


def test_a_cache_file_of_the_older_layout_is_rebuilt_with_a_notice_and_never_misread(tmp_path):
    path = tmp_path / FILE_NAME
    old = ChatResponse("written by the old layout", Usage(3, 4))
    with sqlite3.connect(path) as db:  # what rowloom wrote before the integer-keyed layout (user_version 0)
        db.executescript(_LAYOUT_1)
        for key in keys(3):
            _, _, payload, checksum, *_ = store_module.stored_row(key, old, 0.0)
            db.execute(
                "INSERT INTO replies (key, payload, checksum, size, created, used) VALUES (?, ?, ?, 100, 0, 0)",
                (key, payload, checksum),
            )
    with pytest.warns(RowloomWarning, match=f"{path} was written by an older rowloom: its 3 replies were dropped"):
        store = ReplyStore(tmp_path, max_bytes=2**20)
        assert store.dropped_old == 3
        assert [store.get(key) for key in keys(3)] == [None] * 3
        store.put(keys(3)[0], ChatResponse("fetched again"))
        store.close()
    store = ReplyStore(tmp_path, max_bytes=2**20)  # the new layout now: opened without a notice
    assert store.dropped_old is None and store.get(keys(3)[0]).text == "fetched again"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (store_module.SCHEMA_VERSION,)
        assert db.execute("SELECT count(*) FROM replies").fetchone() == (1,)


_LAYOUT_2_TOTAL = """
CREATE TABLE meta (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, value INTEGER NOT NULL);
INSERT INTO meta VALUES (1, 'bytes', 0);
CREATE TRIGGER replies_added AFTER INSERT ON replies BEGIN UPDATE meta SET value = value + NEW.size WHERE id = 1; END;
CREATE TRIGGER replies_removed AFTER DELETE ON replies BEGIN UPDATE meta SET value = value - OLD.size WHERE id = 1; END;
PRAGMA user_version = 2;
"""


def test_a_cache_file_of_layout_2_keeps_its_replies_and_loses_only_its_byte_total(tmp_path, recwarn):
    store = ReplyStore(tmp_path, max_bytes=2**20)
    for key in keys(3):
        store.put(key, ChatResponse("kept across the upgrade"))
    store.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:  # the same rows, with layout 2's byte total beside them
        db.executescript(_LAYOUT_2_TOTAL)
    store = ReplyStore(tmp_path, max_bytes=2**20)
    assert store.dropped_old is None and [store.get(key).text for key in keys(3)] == ["kept across the upgrade"] * 3
    store.put(keys(4)[-1], ChatResponse("stored after it"))
    store.close()
    assert not [w for w in recwarn if issubclass(w.category, RowloomWarning)]  # nothing was lost: no notice
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (store_module.SCHEMA_VERSION,)
        assert db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')").fetchall() == [
            ("replies",)
        ]
        assert db.execute("SELECT count(*) FROM replies").fetchone() == (4,)


def test_a_cache_file_of_a_newer_layout_is_left_alone_and_not_used(tmp_path):
    path = tmp_path / FILE_NAME
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE replies (anything)")
        db.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    with pytest.raises(store_module.CacheUnavailable, match="newer rowloom"):
        ReplyStore(tmp_path, max_bytes=2**20)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (store_module.SCHEMA_VERSION + 1,)


def test_keys_sharing_a_64_bit_hash_never_answer_for_each_other(tmp_path):
    first, second = b"\x01" * 8 + b"h" * 8, b"\x02" * 8 + b"h" * 8  # the same last 8 bytes: the same row hash
    assert store_module.key_hash(first) == store_module.key_hash(second)
    store = ReplyStore(tmp_path, max_bytes=2**20)
    store.put(first, ChatResponse("first"))
    store.close()
    store = ReplyStore(tmp_path, max_bytes=2**20)
    assert store.get(second) is None and store.get(first).text == "first"
    store.put(second, ChatResponse("second"))  # replaces the row: the first is a miss from now on, never "second"
    store.close()
    store = ReplyStore(tmp_path, max_bytes=2**20)
    assert store.get(first) is None and store.get(second).text == "second"
    store.close()
