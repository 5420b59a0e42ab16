"""`SimulatorProcess`: the simulator in its own OS process, so it never shares the client's event loop or GIL.

Owns spawning, readiness, sync stats/reset access and clean termination; the server itself is in `simulator`.
Stats and resets travel over the child's stdin/stdout pipes, not HTTP, so they work during an outage too.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType
from typing import IO, Any

import orjson

from rowloom.bench.sim_cli import EXIT_PORT_IN_USE
from rowloom.bench.sim_config import SimulatorConfig, require_loopback

_KEY_ENV = "ROWLOOM_SIM_API_KEY"
_LISTENING = re.compile(rb"listening on (http://[^\s/]+?:(\d+))(?:/v1)? [^\n]*\n")
_CONTROL_TIMEOUT_S = 10.0


class SimulatorProcessError(RuntimeError):
    """The simulator process failed to start or answer; the message carries its stderr."""


class SimulatorPortInUse(SimulatorProcessError):
    """The simulator could not start: something already listens on `port`."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        super().__init__(f"port {port} on {host} is already in use")


class SimulatorProcess:
    """Run `python -m rowloom.bench.simulator` as a child; use as `with SimulatorProcess(cfg) as sim:`.

    The child exits when this object stops it, and also when the parent dies (it watches its stdin). Its
    port stays its own across outage windows; `stop()` frees it at once for another simulator (SO_REUSEADDR).
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
        self._out = b""  # what the child wrote to stdout and was not consumed yet
        self._control_lock = threading.Lock()

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
        """The base URL a provider of the simulated API names: `http://127.0.0.1:PORT/v1` (OpenAI, Anthropic), or
        the resource endpoint `http://127.0.0.1:PORT` (Azure)."""
        return self.root_url if self.config.api == "azure" else f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> SimulatorProcess:
        """Spawn the child, wait for its 'listening' line and an answer on its control pipe; returns self.

        Readiness does not use `/health`: an outage window may have the endpoint down from the start.
        """
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
            self._control("ping")
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
        self._out = b""

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """The child's `/stats` document (its own CPU seconds, in-flight, counts by status and path, outages)."""
        return self._control("stats")

    def reset(self) -> None:
        """Like `POST /stats/reset`: zero counters and restart the capacity and outage schedules."""
        self._control("reset")

    def end_outage(self) -> bool:
        """End the child's outage in force now (it listens again on its port); False if none was in force."""
        return self._control("end-outage")

    def _control(self, command: str) -> Any:
        """Send one command line to the child's stdin and return the `ok` value of its one-line JSON answer."""
        with self._control_lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise RuntimeError("the simulator process is not running; use 'with SimulatorProcess(...)' first")
            try:
                proc.stdin.write(command.encode() + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                raise SimulatorProcessError(f"simulator is gone ({exc}){self._tail()}") from None
            deadline = time.monotonic() + _CONTROL_TIMEOUT_S
            while b"\n" not in self._out:
                self._read_more(deadline, f"an answer to {command!r}")
            line, _, self._out = self._out.partition(b"\n")
        reply = orjson.loads(line)
        if "error" in reply:
            raise SimulatorProcessError(f"simulator could not {command}: {reply['error']}")
        return reply["ok"]

    def _await_listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            match = _LISTENING.search(self._out)
            if match:
                self._out = self._out[match.end() :]
                return match.group(1).decode(), int(match.group(2))
            self._read_more(deadline, "its 'listening' line")

    def _read_more(self, deadline: float, waiting_for: str) -> None:
        """Append what the child wrote to stdout next, waiting until `deadline` at most."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise SimulatorProcessError(f"simulator did not send {waiting_for} in time{self._tail()}")
        # read1 returns what is there without waiting for more (the pipe stays open).
        chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
        if not chunk:
            proc.wait(timeout=5)
            if proc.returncode == EXIT_PORT_IN_USE:
                raise SimulatorPortInUse(self.host, self._requested_port)
            raise SimulatorProcessError(
                f"simulator exited with code {proc.returncode} before sending {waiting_for}{self._tail()}"
            )
        self._out += chunk

    def _tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f":\n{text}" if text else ""
