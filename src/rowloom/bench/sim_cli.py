"""The `rowloom sim` command: serve the provider simulator on 127.0.0.1 until Ctrl-C or SIGTERM.

Owns flag parsing and the serve-forever loop (with the control pipe a parent `SimulatorProcess` talks over);
the main CLI registers it: `app.command("sim")(sim)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from pydantic import ValidationError

from rowloom.bench.sim_config import SimulatorConfig, require_loopback
from rowloom.interface import messages  # the CLI's one message style (this module is the `rowloom sim` command)

if TYPE_CHECKING:
    from rowloom.bench.simulator import SimulatorServer

#: The exit status of `rowloom sim` when its port is taken, so that a parent (`SimulatorProcess`) can tell.
EXIT_PORT_IN_USE = 3


class ModeChoice(enum.StrEnum):
    """The two provider behaviours the simulator can take."""

    hosted = "hosted"
    vllm = "vllm"


class ApiChoice(enum.StrEnum):
    """The wire formats the simulator can speak."""

    openai = "openai"
    anthropic = "anthropic"
    azure = "azure"


class JitterChoice(enum.StrEnum):
    """How latency spreads around its mean."""

    uniform = "uniform"
    lognormal = "lognormal"


def sim(
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 18080,
    host: Annotated[str, typer.Option(help="Loopback address to bind; other hosts are refused.")] = "127.0.0.1",
    mode: Annotated[ModeChoice, typer.Option(help="hosted: 429 beyond capacity; vllm: slower under load.")] = (
        ModeChoice.hosted
    ),
    api: Annotated[
        ApiChoice,
        typer.Option(help="Wire format: openai, anthropic (/v1/messages) or azure (deployment URLs)."),
    ] = ApiChoice.openai,
    latency: Annotated[float, typer.Option(help="Mean no-load latency per request, seconds.")] = 0.05,
    jitter: Annotated[float, typer.Option(help="Relative latency spread (0.2 = about ±20%).")] = 0.0,
    jitter_kind: Annotated[JitterChoice, typer.Option(help="Shape of the spread.")] = JitterChoice.uniform,
    latency_per_token: Annotated[float, typer.Option(help="Extra seconds per completion token.")] = 0.0,
    capacity: Annotated[int, typer.Option(help="Requests served at once.")] = 64,
    capacity_schedule: Annotated[
        str | None, typer.Option(help="Capacity steps 'seconds:capacity,...', e.g. '0:64,10:16'.")
    ] = None,
    retry_after: Annotated[float, typer.Option(help="Retry-After hint on capacity 429s, seconds.")] = 1.0,
    send_retry_after: Annotated[
        bool, typer.Option("--send-retry-after/--no-retry-after", help="Send Retry-After headers on 429s.")
    ] = True,
    max_queued: Annotated[
        int | None, typer.Option(help="vllm mode: queue beyond capacity; more requests get 503 at once.")
    ] = None,
    outages: Annotated[
        str | None,
        typer.Option(
            help="Windows when the server is gone (connections refused): 'start+duration,...' in seconds, "
            "e.g. '3+20,40+5'; '3+inf' for good; flapping 'up:down:until', e.g. '5:5:60'."
        ),
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests-per-minute limit (token bucket).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens-per-minute limit (token bucket).")] = None,
    error_rate: Annotated[float, typer.Option(help="Fraction of requests answered --error-status.")] = 0.0,
    error_status: Annotated[
        int, typer.Option(help="Injected error status: 500, gateway 502/504, or 400 (a request refused on its merits).")
    ] = 500,
    overload_rate: Annotated[float, typer.Option(help="Fraction answered --overload-status.")] = 0.0,
    overload_status: Annotated[int, typer.Option(help="Injected overload status: 503, or 529 (Anthropic).")] = 503,
    timeout_rate: Annotated[float, typer.Option(help="Fraction held open for --hang seconds.")] = 0.0,
    hang: Annotated[float, typer.Option(help="Seconds a timeout-injected request is held.")] = 30.0,
    malformed_rate: Annotated[float, typer.Option(help="Fraction answered 200 with a non-JSON body.")] = 0.0,
    truncated_rate: Annotated[float, typer.Option(help="Fraction answered 200 with cut-off JSON.")] = 0.0,
    schema_invalid_rate: Annotated[
        float, typer.Option(help="Fraction of structured replies that break their schema.")
    ] = 0.0,
    usage_details: Annotated[
        bool, typer.Option(help="Report cached prompt tokens and reasoning tokens in the usage block.")
    ] = False,
    omit_usage_rate: Annotated[float, typer.Option(help="Fraction of replies sent without a usage block.")] = 0.0,
    api_key: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer <key>'.", envvar="ROWLOOM_SIM_API_KEY")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for latency jitter and fault draws.")] = 0,
    embedding_dim: Annotated[int, typer.Option(help="Length of embedding vectors.")] = 16,
    reply_words_min: Annotated[int, typer.Option(help="Fewest words in a text reply (max_tokens caps it).")] = 30,
    reply_words_max: Annotated[int, typer.Option(help="Most words in a text reply (max_tokens caps it).")] = 60,
    batch_delay: Annotated[float, typer.Option(help="Batch API: seconds until every line of a batch is done.")] = 5.0,
    batch_fail_rate: Annotated[float, typer.Option(help="Batch API: fraction of lines that fail (500).")] = 0.0,
    batch_expire: Annotated[
        float | None, typer.Option(help="Batch API: seconds after which a running batch expires (default never).")
    ] = None,
    config_json: Annotated[str | None, typer.Option(hidden=True, help="A full SimulatorConfig as JSON.")] = None,
    exit_with_parent: Annotated[
        bool, typer.Option(hidden=True, help="Exit when stdin closes; answer control commands read from it.")
    ] = False,
) -> None:
    """Serve an OpenAI-compatible provider simulator on 127.0.0.1 until interrupted."""
    try:
        require_loopback(host)
    except ValueError as exc:
        messages.error(f"--host: {exc}")
        raise typer.Exit(2) from None
    try:
        if config_json is not None:
            config = SimulatorConfig.model_validate_json(config_json)
            if api_key is not None:  # SimulatorProcess passes the key by environment, never on argv
                config = config.model_copy(update={"api_key": api_key})
        else:
            config = SimulatorConfig(
                mode=mode.value,
                api=api.value,
                latency_s=latency,
                jitter=jitter,
                jitter_kind=jitter_kind.value,
                latency_per_token_s=latency_per_token,
                capacity=capacity,
                capacity_schedule=capacity_schedule or (),
                retry_after_s=retry_after,
                send_retry_after=send_retry_after,
                max_queued=max_queued,
                outages=outages or (),
                rpm=rpm,
                tpm=tpm,
                error_rate=error_rate,
                error_status=error_status,
                overload_rate=overload_rate,
                overload_status=overload_status,
                timeout_rate=timeout_rate,
                hang_s=hang,
                malformed_rate=malformed_rate,
                truncated_rate=truncated_rate,
                schema_invalid_rate=schema_invalid_rate,
                usage_details=usage_details,
                omit_usage_rate=omit_usage_rate,
                api_key=api_key,
                seed=seed,
                embedding_dim=embedding_dim,
                reply_words_min=reply_words_min,
                reply_words_max=reply_words_max,
                batch_delay_s=batch_delay,
                batch_fail_rate=batch_fail_rate,
                batch_expire_s=batch_expire,
            )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {messages.said(e['msg'])}" for e in exc.errors()
        )
        messages.error(f"invalid simulator settings: {problems}")
        raise typer.Exit(2) from None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            # asyncio's own loop, not a run's (`rowloom.concurrency.loops`): the simulated latencies are timed by
            # `loop.time()`, which uvloop keeps to the millisecond; the instrument stays what it was measured as.
            asyncio.run(serve(config, host, port, exit_with_parent=exit_with_parent))
    except OSError as exc:  # the port could not be bound (what else fails while serving is the server's to handle)
        if exc.errno == errno.EADDRINUSE:
            messages.error(
                f"port {port} on {host} is already in use; pick another with --port (0 picks a free one), "
                "or stop what listens there"
            )
            raise typer.Exit(EXIT_PORT_IN_USE) from None
        messages.error(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port")
        raise typer.Exit(1) from None


async def serve(config: SimulatorConfig, host: str, port: int, exit_with_parent: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or stdin EOF with `exit_with_parent`), printing where it listens."""
    from rowloom.bench.simulator import SimulatorServer  # deferred: simulator.py runs this module as __main__

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with SimulatorServer(config, host=host, port=port) as server:
        limits = f", rpm={config.rpm}" if config.rpm else ""
        limits += f", tpm={config.tpm}" if config.tpm else ""
        limits += f", outages={len(config.outages)}" if config.outages else ""
        print(
            f"rowloom sim listening on {server.base_url} (api={config.api}, mode={config.mode}, "
            f"capacity={config.capacity}, "
            f"latency={config.latency_s}s{limits})",
            flush=True,
        )
        if exit_with_parent:
            control = _ControlPipe(server, stop)
            loop.add_reader(0, control.on_readable)
        await stop.wait()


class _ControlPipe:
    """Commands from a parent `SimulatorProcess` on stdin, one per line (`ping`, `stats`, `reset`, `end-outage`),
    each answered by one JSON line on stdout: `{"ok": value}` or `{"error": message}`.

    A pipe, not HTTP, so stats and resets work while an outage has the endpoint down. A parent that dies (even
    by SIGKILL) closes the pipe, which makes fd 0 readable at EOF: that stops the server. The loop watches the
    raw fd, so no thread holds sys.stdin's lock when the interpreter shuts down.
    """

    def __init__(self, server: SimulatorServer, stop: asyncio.Event):
        self._server = server
        self._stop = stop
        self._buffer = b""
        self._answering: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[str] = asyncio.Queue()

    def on_readable(self) -> None:
        """Read what the parent sent; queue each complete line; stop at EOF."""
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(0)
            self._stop.set()
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._commands.put_nowait(line.decode(errors="replace").strip())
        if self._answering is None:
            self._answering = asyncio.get_running_loop().create_task(self._answer_in_order())

    async def _answer_in_order(self) -> None:
        while True:
            command = await self._commands.get()
            try:
                reply: dict[str, Any] = {"ok": await self._run(command)}
            except Exception as exc:  # the answer carries it to the parent, which raises it there
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
            sys.stdout.buffer.flush()

    async def _run(self, command: str) -> Any:
        server = self._server
        if command == "ping":
            return True
        if command == "stats":
            return await server.stats()
        if command == "reset":
            server.reset()
            return True
        if command == "end-outage":
            return await server.end_outage()
        raise ValueError(f"unknown control command {command!r}")


def main() -> None:
    """Entry point for `python -m rowloom.bench.simulator`."""
    app = typer.Typer(add_completion=False, rich_markup_mode=None)  # plain help, as `rowloom sim --help`
    app.command()(sim)
    app()
