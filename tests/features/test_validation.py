"""Validation columns: user validators in a worker with a timeout; raising or timing out is a counted outcome."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rowloom import DatasetBuilder
from rowloom.engine.generators.validation import interpret
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError

from .helpers import offline

N = [{"name": "n", "type": "uniform", "low": 0, "high": 99, "integer": True}]


def even(row: dict) -> object:
    n = row["n"]
    if n % 10 == 3:
        raise RuntimeError("validator bug")
    if n % 10 == 7:
        time.sleep(3)  # past the timeout: abandoned, the run goes on
    if n % 2:
        return False, f"{n} is odd"
    return True


def test_validator_return_values_are_interpreted():
    assert interpret(None) == (True, None)
    assert interpret(False) == (False, None)
    assert interpret((False, "why")) == (False, "why")
    assert interpret(["a", "b"]) == (False, "a; b")
    assert interpret([]) == (True, None)
    assert interpret({"valid": False, "errors": ["x"]}) == (False, "x")
    assert interpret("too short") == (False, "too short")


async def test_raising_and_timing_out_validators_are_recorded_and_counted(tmp_path):
    columns = [*N, {"name": "check", "type": "validation", "function": even, "inputs": ["n"], "timeout_s": 0.3}]
    started = time.monotonic()
    await run_job(offline(columns, run={"row_group_size": 25}), 100, output=tmp_path / "out")
    assert time.monotonic() - started < 10  # timeouts are bounded; nothing waits for the sleeping threads
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.schema.field("check").type == pa.struct([("valid", pa.bool_()), ("errors", pa.string())])
    frame = table.to_pandas()
    outcomes = {"valid": 0, "invalid": 0, "error": 0, "timeout": 0}
    for n, check in zip(frame["n"], frame["check"], strict=True):
        if n % 10 == 3:
            assert check == {"valid": False, "errors": "validator raised RuntimeError: validator bug"}
            outcomes["error"] += 1
        elif n % 10 == 7:
            assert check == {"valid": False, "errors": "validator timed out after 0.3 s"}
            outcomes["timeout"] += 1
        elif n % 2:
            assert check == {"valid": False, "errors": f"{n} is odd"}
            outcomes["invalid"] += 1
        else:
            assert check == {"valid": True, "errors": None}
            outcomes["valid"] += 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["validation"] == {"check": outcomes}
    assert summary["status"] == "completed" and summary["rows_dropped"] == 0


async def test_on_error_drop_and_drop_invalid_drop_rows_with_reasons(tmp_path):
    columns = [
        *N,
        {
            "name": "check",
            "type": "validation",
            "function": even,
            "inputs": ["n"],
            "timeout_s": 0.2,
            "on_error": "drop",
            "drop_invalid": True,
        },
    ]
    result = await run_job(offline(columns, run={"row_group_size": 25, "max_error_rate": 1.0}), 100, output=None)
    frame = result.to_pandas()
    assert (frame["n"] % 2 == 0).all() and frame["check"].map(lambda c: c["valid"]).all()
    reasons = result.summary["rows_dropped_by_reason"]
    assert set(reasons) <= {"check:invalid", "check:validator_error", "check:validator_timeout"}
    assert sum(reasons.values()) == 100 - len(frame) == result.summary["rows_dropped"]


async def test_process_isolation_kills_a_validator_that_hangs(tmp_path, monkeypatch):
    module = tmp_path / "hanging_validators.py"
    module.write_text(
        textwrap.dedent(
            """
            import time

            def check(row):
                if row["n"] % 2:
                    time.sleep(60)
                return True
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    builder = DatasetBuilder().with_seed(pd.DataFrame({"n": [7, 8, 7, 8]})).with_run(row_group_size=4)
    builder.add_column(
        "check", "validation", function="hanging_validators:check", inputs=["n"], isolation="process", timeout_s=1.0
    )
    started = time.monotonic()
    result = await run_job(builder.build(), 4, output=None)
    assert time.monotonic() - started < 20
    frame = result.to_pandas()
    assert frame["n"].tolist() == [7, 8, 7, 8]
    for n, check in zip(frame["n"], frame["check"], strict=True):
        expected = {"valid": False, "errors": "validator timed out after 1 s (process killed)"}
        assert check == (expected if n == 7 else {"valid": True, "errors": None})


def test_validation_columns_need_one_kind_of_validator():
    with pytest.raises(ConfigError, match="either `function`"):
        offline([*N, {"name": "v", "type": "validation", "inputs": ["n"]}])
    with pytest.raises(ConfigError, match="needs `target`"):
        offline([*N, {"name": "v", "type": "validation", "language": "sql"}])
    with pytest.raises(ConfigError, match=r"columns\[1\] \(v\).function"):
        offline([*N, {"name": "v", "type": "validation", "function": "not a path"}])
    with pytest.raises(ConfigError, match="cannot be saved"):
        offline([*N, {"name": "v", "type": "validation", "function": even, "inputs": ["n"]}]).to_yaml()


async def test_a_validator_that_hangs_leaves_at_most_the_bound_of_threads_behind():
    import threading

    from rowloom.engine.generators.validation import AbandonedThreads, ValidatorFailed, call_in_thread

    release = threading.Event()

    def hangs(row: dict) -> bool:
        return release.wait(30)

    def threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "rowloom-validator-bound")

    abandoned = AbandonedThreads(limit=2)
    for _ in range(2):
        with pytest.raises(ValidatorFailed, match=r"timed out after 0\.05 s"):
            await call_in_thread(hangs, {}, 0.05, "bound", abandoned)
    assert abandoned.count == 2 and threads() == 2
    for _ in range(3):  # at the bound: each call waits its timeout for room, then fails without a thread
        with pytest.raises(ValidatorFailed, match=r"not run within 0\.05 s: 2 earlier calls still run"):
            await call_in_thread(hangs, {}, 0.05, "bound", abandoned)
    assert threads() == 2
    waiting = asyncio.ensure_future(call_in_thread(lambda row: release.is_set(), {}, 5.0, "bound", abandoned))
    await asyncio.sleep(0.05)
    release.set()  # the hung calls return: room again, and the waiting call runs
    assert await waiting is True  # it ran only once a hung call had returned
    for thread in [t for t in threading.enumerate() if t.name == "rowloom-validator-bound"]:
        thread.join(5)  # the other hung call may still be on its way out: its return is what uncounts it
    assert abandoned.count == 0 and threads() == 0
