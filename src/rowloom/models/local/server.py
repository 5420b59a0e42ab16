"""`LocalModelServer`: llama.cpp's OpenAI-compatible server for a `type: local` provider, as a child process.

Owns spawning the child on 127.0.0.1, waiting for `/health`, and stopping it on every exit path (the child also
exits by itself when this process dies). Requests go through the ordinary client; nothing here sends any.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

import aiohttp

from rowloom.config.models import ProviderConfig
from rowloom.models.local import child
from rowloom.models.local.errors import (
    LocalPortUnavailable,
    LocalRuntimeMissing,
    LocalServerStartFailed,
)
from rowloom.models.local.model_file import resolve_model_path

_HOST = "127.0.0.1"
_TAIL_CHARS = 4000
_STOP_GRACE_S = 5.0
_HEALTH_RETRY_S = 0.1
_BIND_FAILURE = "couldn't bind"  # llama.cpp's words when its HTTP socket cannot be bound


def require_runtime(provider: str) -> None:
    """Raise `LocalRuntimeMissing` unless xllamacpp is importable (checked without importing it here)."""
    try:
        spec = importlib.util.find_spec("xllamacpp")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise LocalRuntimeMissing(provider)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Model threads when the provider sets none: every core but one, and at least one.

    llama.cpp's threads advance in lock step, so one of them waiting for a core stalls all. Measured on 2 cores
    (SmolLM2-135M): idle, 2 threads decode 71 tok/s and 1 thread 43; with other work on the machine 2 threads fell
    to ~2 tok/s while 1 kept 23-33. The spare core also serves rowloom's own event loop.
    """
    return max(1, available_cores() - 1)


def _check_port(provider: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind((_HOST, port))
        except OSError as exc:
            raise LocalPortUnavailable(provider, port, exc.strerror or str(exc)) from None


class LocalModelServer:
    """One llama.cpp server for one `type: local` provider; use as `async with LocalModelServer(p) as server:`.

    After `start()`, `provider` is the config with `base_url` set and `api_key` is the per-run key the server
    requires, so the ordinary OpenAI-compatible client talks to it like to any endpoint. `stop()` is idempotent.
    """

    def __init__(self, provider: ProviderConfig):
        if provider.type != "local":
            raise ValueError(f"provider {provider.name!r} is type {provider.type!r}, not local")
        self.config = provider
        #: Required by the server on every request except /health, so other local users cannot borrow it.
        self.api_key = secrets.token_urlsafe(24)
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._root_url: str | None = None
        self._model_path: Path | None = None

    # ------------------------------------------------------------ what callers read

    @property
    def running(self) -> bool:
        """Whether the child process was started and has not been stopped."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT` (for `/health`)."""
        if self._root_url is None:
            raise RuntimeError(f"local provider {self.config.name!r} is not running; call start() first")
        return self._root_url

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://127.0.0.1:PORT/v1`."""
        return f"{self.root_url}/v1"

    @property
    def provider(self) -> ProviderConfig:
        """The provider config with `base_url` pointing at this server."""
        return self.config.model_copy(update={"base_url": self.base_url})

    @property
    def model_path(self) -> Path | None:
        """The GGUF file being served (known once started)."""
        return self._model_path

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalModelServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> LocalModelServer:
        """Spawn the server, wait until it listens and `/health` answers ok; returns self.

        Raises `LocalRuntimeMissing`, `LocalModelNotFound`, `LocalPortUnavailable` or `LocalServerStartFailed`
        (with the child's stderr tail). On any failure or cancellation the child is stopped before this returns.
        """
        if self._proc is not None:
            raise RuntimeError(f"local provider {self.config.name!r} is already running")
        name = self.config.name
        require_runtime(name)
        self._model_path = resolve_model_path(self.config)
        if self.config.port is not None:
            _check_port(name, self.config.port)
        spec = {
            "model_path": str(self._model_path),
            "port": self.config.port or 0,  # 0: llama.cpp binds a free port and reports it
            "parallel_slots": self.config.parallel_slots,
            "context_size": self.config.context_size,
            "threads": self.config.threads or default_threads(),
            "parent_pid": os.getpid(),
        }
        env = {**os.environ, child.API_KEY_ENV: self.api_key}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed in stop()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # run the file without importing rowloom (faster start) or putting its folder on sys.path
                child.__file__,
                json.dumps(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._stderr,
                env=env,
            )
            async with asyncio.timeout(self.config.startup_timeout_s):
                self._root_url = await self._await_ready()
                await self._await_health()
        except TimeoutError:
            message = (
                f"local provider {name!r}: the llama.cpp server did not answer /health within "
                f"{self.config.startup_timeout_s:g} s (model {self._model_path}); raise startup_timeout_s for a "
                f"larger model{self._tail()}"
            )
            await self.stop()
            raise LocalServerStartFailed(message) from None
        except BaseException:
            await self.stop()
            raise
        return self

    def terminate(self) -> None:
        """Tell the child to exit now (stdin EOF and SIGTERM) without waiting; `stop()` waits for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child also exits on stdin EOF
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    async def stop(self) -> None:
        """Stop the child (SIGTERM, SIGKILL after a grace period) and wait for it to exit. Safe to repeat."""
        # Signalled before any await: the child goes even if this coroutine is cancelled below.
        self.terminate()
        proc, self._proc = self._proc, None
        self._root_url = None
        try:
            if proc is not None and proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), _STOP_GRACE_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    # ------------------------------------------------------------ startup steps

    async def _await_ready(self) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                code = await proc.wait()
                raise self._exit_error(code)
            text = line.decode(errors="replace").strip()
            if text.startswith(child.READY_PREFIX):
                return str(json.loads(text.removeprefix(child.READY_PREFIX))["url"])

    def _exit_error(self, code: int) -> Exception:
        name = self.config.name
        tail = self._tail()
        if code == child.EXIT_NO_RUNTIME:
            return LocalRuntimeMissing(name)
        if _BIND_FAILURE in tail:
            return LocalPortUnavailable(name, self.config.port, f"llama.cpp could not bind it{tail}")
        return LocalServerStartFailed(
            f"local provider {name!r}: the llama.cpp server exited with code {code} before listening "
            f"(model {self._model_path}){tail}"
        )

    async def _await_health(self) -> None:
        """`GET /health` until it says ok; 503 means the model is still loading. Bounded by the caller."""
        url = f"{self.root_url}/health"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                proc = self._proc
                if proc is None or proc.returncode is not None:
                    raise self._exit_error(proc.returncode if proc is not None else -1)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(_HEALTH_RETRY_S)

    def _tail(self) -> str:
        """The end of the child's stderr as `:\\n...`, or '' when it wrote nothing."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _TAIL_CHARS))
        text = self._stderr.read().decode(errors="replace").strip()
        return f"; its stderr ends with:\n{text}" if text else ""
