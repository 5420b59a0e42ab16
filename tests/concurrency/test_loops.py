"""Which event loop a run gets: uvloop's when installed, asyncio's when asked for or when uvloop is missing, and a
clear error (naming ROWLOOM_EVENT_LOOP and the fix) for anything else — from the API and from the CLI."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys

import pytest

from rowloom.concurrency.loops import LOOP_VARIABLE, event_loop_factory, run

uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux and macOS only")


async def loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_a_run_is_on_uvloops_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert run(loop_type()) is uvloop.Loop
    monkeypatch.setenv(LOOP_VARIABLE, " UVloop ")  # case and spaces do not matter
    assert run(loop_type()) is uvloop.Loop


def test_asyncio_is_chosen_by_name_and_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "asyncio")
    assert issubclass(run(loop_type()), asyncio.BaseEventLoop)
    monkeypatch.setenv(LOOP_VARIABLE, "auto")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert issubclass(run(loop_type()), asyncio.BaseEventLoop)


def test_a_run_returns_its_result_and_shuts_its_loop_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        return await asyncio.to_thread(lambda: 42)  # the default executor is shut down after, as asyncio.run does

    assert run(main()) == 42
    assert seen[0].is_closed()


def test_an_unknown_loop_is_an_error_naming_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "trio")
    with pytest.raises(ValueError, match=r"ROWLOOM_EVENT_LOOP='trio' is not a loop rowloom knows: set it to auto"):
        event_loop_factory()
    coroutine = loop_type()
    with pytest.raises(ValueError, match="ROWLOOM_EVENT_LOOP"):
        run(coroutine)
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED  # no "never awaited" warning on top


def test_asking_for_uvloop_where_it_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(ValueError, match=r"uvloop is not installed: `pip install uvloop`, or unset ROWLOOM_EVENT_LOOP"):
        event_loop_factory()


def test_the_cli_says_a_mistaken_loop_choice_in_one_line_before_any_work(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rowloom.interface", "validate", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, LOOP_VARIABLE: "fast"},
    )
    assert done.returncode == 1
    assert "error: ROWLOOM_EVENT_LOOP='fast' is not a loop rowloom knows" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert "missing.yaml" not in done.stderr + done.stdout  # said before the command ran
