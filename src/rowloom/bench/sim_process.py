"""`SimulatorProcess`: the simulator in its own OS process, so it never shares the client's event loop or GIL.

Owns spawning, readiness, sync `/stats` access and clean termination; the server itself is in `simulator`.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.request
from types import TracebackType
from typing import IO, Any

import orjson

from rowloom.bench.sim_config import SimulatorConfig, require_loopback

_KEY_ENV = "ROWLOOM_SIM_API_KEY"
_LISTENING = re.compile(rb"listening on (http://\S+?:(\d+))/v1")
# An opener that ignores http_proxy & co: the simulator is always on loopback and must never be proxied.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatorProcessError(RuntimeError):
    """The simulator process failed to start or answer; the message carries its stderr."""


class SimulatorProcess:
    """Run `python -m rowloom.bench.simulator` as a child; use as `with SimulatorProcess(cfg) as sim:`.

    The child exits when this object stops it, and also when the parent dies (it watches its stdin).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 30.0,
    ):
        self.config = config or SimulatorConfig()
        self.host = require_loopback(host)
        self._requested_port = port
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._root_url: str | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the child bound."""
        if self._port is None:
            raise RuntimeError("the simulator process is not running; use 'with SimulatorProcess(...)' first")
        return self._port

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT` (for `/stats`, `/health`)."""
        if self._root_url is None:
            raise RuntimeError("the simulator process is not running; use 'with SimulatorProcess(...)' first")
        return self._root_url

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://127.0.0.1:PORT/v1`."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> SimulatorProcess:
        """Spawn the child, wait for its 'listening' line and a healthy `/health`; returns self."""
        if self._proc is not None:
            raise RuntimeError("the simulator process is already running")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed in stop()
        command = [
            sys.executable,
            "-m",
            "rowloom.bench.simulator",
            "--host",
            self.host,
            "--port",
            str(self._requested_port),
            "--config-json",
            self.config.model_dump_json(exclude={"api_key"}),
            "--exit-with-parent",
        ]
        # The key travels by environment: command lines are visible to every user of the machine.
        env = {k: v for k, v in os.environ.items() if k != _KEY_ENV}
        if self.config.api_key is not None:
            env[_KEY_ENV] = self.config.api_key
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        try:
            self._root_url, self._port = self._await_listening()
            self._get("/health")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._root_url = self._port = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """`GET /stats` of the child: its own CPU seconds, in-flight, counts by status and path."""
        return orjson.loads(self._get("/stats"))

    def reset(self) -> None:
        """`POST /stats/reset`: zero counters and restart the capacity schedule."""
        self._get("/stats/reset", method="POST")

    def _get(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(self.root_url + path, method=method, data=b"" if method == "POST" else None)
        with _OPENER.open(request, timeout=10) as response:
            return response.read()

    def _await_listening(self) -> tuple[str, int]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self._startup_timeout_s
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                match = _LISTENING.search(buffer)
                if match:
                    return match.group(1).decode(), int(match.group(2))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SimulatorProcessError(f"simulator did not start in {self._startup_timeout_s}s{self._tail()}")
                if selector.select(remaining):
                    # read1 returns what is there without waiting for more (the pipe stays open).
                    chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
                    if not chunk:
                        proc.wait(timeout=5)
                        raise SimulatorProcessError(
                            f"simulator exited with code {proc.returncode} before listening{self._tail()}"
                        )
                    buffer += chunk

    def _tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f":\n{text}" if text else ""
