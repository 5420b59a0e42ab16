"""The OpenAI-compatible provider simulator: `SimulatorServer` runs it on the current event loop.

This is the public face of the simulator (config, server, process, schedule parser); the behaviour lives in
the `sim_*` modules. `python -m rowloom.bench.simulator --port N ...` serves with the `rowloom sim` flags.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from aiohttp import web

from rowloom.bench.sim_app import SimulatorApp
from rowloom.bench.sim_config import SimulatorConfig, parse_capacity_schedule, require_loopback
from rowloom.bench.sim_process import SimulatorProcess

__all__ = ["SimulatorConfig", "SimulatorProcess", "SimulatorServer", "parse_capacity_schedule"]

# Hung (timeout-injected) requests must not hold up shutdown: after this grace their handlers are cancelled.
_SHUTDOWN_GRACE_S = 0.25


class SimulatorServer:
    """A simulated provider listening on 127.0.0.1, running on the caller's event loop.

    Use `async with SimulatorServer(config) as sim:` and point clients at `sim.base_url`.
    """

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimulatorConfig()
        self.host = require_loopback(host)
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._app: SimulatorApp | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with `port=0`)."""
        if self._port is None:
            raise RuntimeError("the simulator is not running; use 'async with SimulatorServer(...)' first")
        return self._port

    @property
    def root_url(self) -> str:
        """`http://host:port` without the `/v1` prefix (for `/stats`, `/health`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://127.0.0.1:PORT/v1`."""
        return f"{self.root_url}/v1"

    async def start(self) -> SimulatorServer:
        """Bind and start serving; returns self."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._app = SimulatorApp(self.config)
        # No access log (it costs more CPU than the simulation); cancelling handlers on disconnect frees
        # capacity the way real servers abort requests whose client is gone.
        runner = web.AppRunner(
            self._app.web_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_GRACE_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._app.close()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop serving; in-flight requests are cancelled after a short grace."""
        runner, self._runner = self._runner, None
        if self._app is not None:
            self._app.close()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stats(self) -> dict[str, Any]:
        """The `/stats` document, read directly. CPU seconds here include the caller's own work."""
        return self._require_app().snapshot()

    def reset(self) -> None:
        """Zero counters, refill rate limits and restart the capacity schedule (like `POST /stats/reset`)."""
        self._require_app().reset()

    def _require_app(self) -> SimulatorApp:
        if self._app is None:
            raise RuntimeError("the simulator is not running; use 'async with SimulatorServer(...)' first")
        return self._app


if __name__ == "__main__":
    from rowloom.bench.sim_cli import main

    main()
