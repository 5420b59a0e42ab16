"""Which event loop a run gets: asyncio's by default, uvloop's when ROWLOOM_EVENT_LOOP asks for it, and a clear
error (naming the variable and the fix) for anything else or for uvloop where it is missing — from the API and the
CLI."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from rowloom.bench.sim_config import SimulatorConfig
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.concurrency.loops import LOOP_VARIABLE, event_loop_factory, run
from rowloom.interface.cli import app


async def loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_a_run_is_on_asyncios_loop_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert issubclass(run(loop_type()), asyncio.BaseEventLoop)
    monkeypatch.setenv(LOOP_VARIABLE, " AsyncIO ")  # case and spaces do not matter
    assert issubclass(run(loop_type()), asyncio.BaseEventLoop)


def test_uvloop_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop (the `uvloop` extra) is not installed")
    monkeypatch.setenv(LOOP_VARIABLE, "uvloop")
    assert run(loop_type()) is uvloop.Loop


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_run_returns_its_result_and_shuts_its_loop_down(monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop (the `uvloop` extra) is not installed")
    monkeypatch.setenv(LOOP_VARIABLE, loop)
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        return await asyncio.to_thread(lambda: 42)  # the default executor is shut down after, as asyncio.run does

    assert run(main()) == 42
    assert seen[0].is_closed()


def test_an_unknown_loop_is_an_error_naming_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "trio")
    with pytest.raises(ValueError, match=r"ROWLOOM_EVENT_LOOP='trio' is not a loop rowloom knows: set it to asyncio"):
        event_loop_factory()
    coroutine = loop_type()
    with pytest.raises(ValueError, match="ROWLOOM_EVENT_LOOP"):
        run(coroutine)
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED  # no "never awaited" warning on top


def test_asking_for_uvloop_where_it_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with pytest.raises(ValueError, match=r"uvloop is not installed: `pip install 'rowloom\[uvloop\]'`, or unset"):
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


def test_a_whole_run_on_uvloop_writes_every_record(tmp_path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    pytest.importorskip("uvloop", reason="uvloop (the `uvloop` extra) is not installed")
    monkeypatch.setenv(LOOP_VARIABLE, "uvloop")
    with SimulatorProcess(SimulatorConfig(latency_s=0.005, capacity=8, models=("sim-small",))) as sim:
        config = {
            "providers": [{"name": "sim", "base_url": sim.base_url}],
            "models": [{"alias": "writer", "provider": "sim", "model": "sim-small", "max_parallel_requests": 8}],
            "columns": [
                {"name": "topic", "type": "category", "values": ["a", "b"]},
                {"name": "question", "type": "llm_text", "model": "writer", "prompt": "About {{ topic }}"},
                {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "Answer {{ question }}"},
            ],
            "run": {"row_group_size": 10},
        }
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
        with caplog.at_level("DEBUG", logger="rowloom.engine.job"):
            ran = CliRunner().invoke(app, ["run", str(tmp_path / "cfg.yaml"), "-n", "40", "-o", str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output
    assert "wrote 40 records" in ran.output
    assert "event loop: uvloop.Loop" in caplog.text
