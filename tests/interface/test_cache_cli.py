"""`rowloom cache stats|clear` on a cache folder: counts, clearing only old replies, then all, and bad durations."""

from __future__ import annotations

import sqlite3
import time

from typer.testing import CliRunner

from rowloom.interface.cli import app
from rowloom.models.cache import ReplyStore
from rowloom.models.cache.store import FILE_NAME
from rowloom.models.types import ChatResponse


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_stats_then_clear_old_replies_then_all(tmp_path):
    store = ReplyStore(tmp_path, max_bytes=2**30)
    for i in range(10):
        store.put(i.to_bytes(16, "big"), ChatResponse(f"reply {i}"))
    store.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:  # three of them stored eight days ago
        db.execute("UPDATE replies SET created = ? WHERE key < ?", (time.time() - 8 * 86400, (3).to_bytes(16, "big")))
    code, output = invoke("cache", "stats", "--cache", str(tmp_path))
    assert code == 0 and f"{tmp_path / FILE_NAME}: 10 replies" in output
    code, output = invoke("cache", "clear", "--cache", str(tmp_path), "--older-than", "7d")
    assert code == 0 and "deleted 3 replies stored more than 7d ago" in output
    code, output = invoke("cache", "clear", "--cache", str(tmp_path))
    assert code == 0 and "deleted 7 replies" in output
    assert "0 replies" in invoke("cache", "stats", "--cache", str(tmp_path))[1]


def test_a_bad_duration_and_a_missing_cache_are_told_plainly(tmp_path):
    code, output = invoke("cache", "clear", "--cache", str(tmp_path), "--older-than", "7 days")
    assert code == 2 and "--older-than: '7 days' is not a duration" in output
    code, output = invoke("cache", "stats", "--cache", str(tmp_path / "none"))
    assert code == 0 and "no reply cache in" in output
