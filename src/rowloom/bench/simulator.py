"""The OpenAI-compatible provider simulator: `SimulatorServer` runs it on the current event loop.

This is the public face of the simulator (config, server, process, schedule parsers); the behaviour lives in
the `sim_*` modules. `python -m rowloom.bench.simulator --port N ...` serves with the `rowloom sim` flags.
The server owns the listening socket, so it also plays outages: it closes the socket and cuts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

from aiohttp import web

from rowloom.bench.sim_app import SimulatorApp
from rowloom.bench.sim_config import SimulatorConfig, parse_capacity_schedule, require_loopback
from rowloom.bench.sim_outages import OutageTimer, flap_windows, parse_outages
from rowloom.bench.sim_process import SimulatorProcess

__all__ = [
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorServer",
    "flap_windows",
    "parse_capacity_schedule",
    "parse_outages",
]

_log = logging.getLogger(__name__)

# Hung (timeout-injected) requests must not hold up shutdown: after this grace their handlers are cancelled.
_SHUTDOWN_GRACE_S = 0.25
# Cut requests leave service one loop step or two after their connection is aborted; the outage waits for
# that (woken by the last one) so the server comes back with nothing in flight, but never longer than this.
_DRAIN_BOUND_S = 1.0
# After an outage another process may hold the port (it was free meanwhile); binding is retried this often.
_REBIND_RETRY_S = 0.2


class SimulatorServer:
    """A simulated provider listening on 127.0.0.1, running on the caller's event loop.

    Use `async with SimulatorServer(config) as sim:` and point clients at `sim.base_url`.

    During an outage window (`config.outages`) the server behaves like a process that went away: the listening
    socket is closed (connections are refused), open connections are aborted and requests in service dropped.
    After the window it listens again on the same port. `/stats` and `/health` are unreachable meanwhile;
    `stats()` and `reset()` here (and on `SimulatorProcess`, over its pipe) work throughout.
    """

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimulatorConfig()
        self.host = require_loopback(host)
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._app: SimulatorApp | None = None
        self._site: web.TCPSite | None = None  # None while running = down
        self._outages: OutageTimer | None = None
        self._transition: asyncio.Task[None] | None = None
        self._rebind_timer: asyncio.TimerHandle | None = None

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
        """The base URL a provider of the simulated API names: `http://127.0.0.1:PORT/v1` (OpenAI, Anthropic), or
        the resource endpoint `http://127.0.0.1:PORT` (Azure)."""
        return self.root_url if self.config.api == "azure" else f"{self.root_url}/v1"

    @property
    def elapsed_s(self) -> float:
        """Seconds on the schedules' clock: since start or the last reset (outage windows count from there)."""
        app = self._require_app()
        return asyncio.get_running_loop().time() - app.epoch

    @property
    def down(self) -> bool:
        """Whether an outage has the server unreachable now."""
        return self._runner is not None and self._site is None

    async def start(self) -> SimulatorServer:
        """Bind and start serving (down at once if an outage window covers t=0); returns self."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._app = SimulatorApp(self.config, on_reset=self._schedule_restarted)
        # No access log (it costs more CPU than the simulation); cancelling handlers on disconnect frees
        # capacity the way real servers abort requests whose client is gone.
        self._runner = web.AppRunner(
            self._app.web_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_GRACE_S,
        )
        try:
            await self._runner.setup()
            await self._listen(self._requested_port)  # binds even when down at t=0: port 0 needs a real port
            self._outages = OutageTimer(self.config.outages, self._outage_changed)
            self._outages.restart(self._app.epoch)
            await self._settle()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop serving; in-flight requests are cancelled after a short grace."""
        runner, self._runner = self._runner, None
        if self._outages is not None:
            self._outages.close()
        if self._rebind_timer is not None:
            self._rebind_timer.cancel()
        transition, self._transition = self._transition, None
        if transition is not None and not transition.done():
            transition.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await transition
        if self._app is not None:
            self._app.close()
        self._site = None
        if runner is not None:
            await runner.cleanup()

    async def end_outage(self) -> bool:
        """End the outage in force now (later windows still apply) and return once listening again.

        False if no outage was in force. This is how a test ends an outage of infinite duration.
        """
        if self._outages is None or not self._outages.end_current():
            return False
        await self._settle()
        return True

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

    # --- outages ----------------------------------------------------------------------------------------

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        # SO_REUSEADDR: the port is re-bound right after an outage, whatever TIME_WAIT the cut left behind.
        site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await site.stop()  # unregister the failed site from the runner
            raise
        self._site = site
        self._port = site.port

    def _schedule_restarted(self, epoch: float) -> None:
        if self._outages is not None:
            self._outages.restart(epoch)

    def _outage_changed(self) -> None:
        # From a loop timer: one transition task at a time, and it re-reads the wanted state after every step,
        # so windows that begin and end while it works are followed in order.
        if self._runner is not None and (self._transition is None or self._transition.done()):
            self._transition = asyncio.get_running_loop().create_task(self._follow_outages())

    async def _settle(self) -> None:
        """Bring the sockets in line with the outage schedule now and wait until they are."""
        self._outage_changed()
        if self._transition is not None:
            await asyncio.shield(self._transition)

    async def _follow_outages(self) -> None:
        while self._runner is not None and self._outages is not None and self.down != self._outages.down:
            if self._outages.down:
                await self._go_down()
            elif not await self._go_up():
                return

    async def _go_down(self) -> None:
        runner, app, site = self._runner, self._app, self._site
        assert runner is not None and app is not None and site is not None
        self._site = None
        await site.stop()  # closes the listening socket: from now on connections are refused
        transports = [
            handler.transport
            for handler in runner.server.connections  # type: ignore[union-attr]
            if handler.transport is not None and not handler.transport.is_closing()
        ]
        app.outage_began(len(transports))
        for transport in transports:
            transport.abort()  # keep-alive connections too; their handlers are cancelled
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.drained(), _DRAIN_BOUND_S)

    async def _go_up(self) -> bool:
        assert self._app is not None
        try:
            await self._listen(self.port)
        except OSError as exc:
            _log.warning(
                "simulator cannot listen on port %d again (%s); retrying in %.1fs", self.port, exc, _REBIND_RETRY_S
            )
            self._rebind_timer = asyncio.get_running_loop().call_later(_REBIND_RETRY_S, self._outage_changed)
            return False
        self._app.outage_ended()
        return True

    def _require_app(self) -> SimulatorApp:
        if self._app is None:
            raise RuntimeError("the simulator is not running; use 'async with SimulatorServer(...)' first")
        return self._app


if __name__ == "__main__":
    from rowloom.bench.sim_cli import main

    main()
