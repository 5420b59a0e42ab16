"""The `rowloom sim` command: serve the provider simulator on 127.0.0.1 until Ctrl-C or SIGTERM.

Owns flag parsing and the serve-forever loop only; the main CLI registers it: `app.command("sim")(sim)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
from typing import Annotated

import typer
from pydantic import ValidationError

from rowloom.bench.sim_config import SimulatorConfig, require_loopback


class ModeChoice(enum.StrEnum):
    """The two provider behaviours the simulator can take."""

    hosted = "hosted"
    vllm = "vllm"


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
    rpm: Annotated[int | None, typer.Option(help="Requests-per-minute limit (token bucket).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens-per-minute limit (token bucket).")] = None,
    error_rate: Annotated[float, typer.Option(help="Fraction of requests answered 500.")] = 0.0,
    overload_rate: Annotated[float, typer.Option(help="Fraction answered 503.")] = 0.0,
    timeout_rate: Annotated[float, typer.Option(help="Fraction held open for --hang seconds.")] = 0.0,
    hang: Annotated[float, typer.Option(help="Seconds a timeout-injected request is held.")] = 30.0,
    malformed_rate: Annotated[float, typer.Option(help="Fraction answered 200 with a non-JSON body.")] = 0.0,
    truncated_rate: Annotated[float, typer.Option(help="Fraction answered 200 with cut-off JSON.")] = 0.0,
    schema_invalid_rate: Annotated[
        float, typer.Option(help="Fraction of structured replies that break their schema.")
    ] = 0.0,
    api_key: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer <key>'.", envvar="ROWLOOM_SIM_API_KEY")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for latency jitter and fault draws.")] = 0,
    embedding_dim: Annotated[int, typer.Option(help="Length of embedding vectors.")] = 16,
    config_json: Annotated[str | None, typer.Option(hidden=True, help="A full SimulatorConfig as JSON.")] = None,
    exit_with_parent: Annotated[bool, typer.Option(hidden=True, help="Exit when stdin closes.")] = False,
) -> None:
    """Serve an OpenAI-compatible provider simulator on 127.0.0.1 until interrupted."""
    try:
        require_loopback(host)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--host") from None
    try:
        if config_json is not None:
            config = SimulatorConfig.model_validate_json(config_json)
            if api_key is not None:  # SimulatorProcess passes the key by environment, never on argv
                config = config.model_copy(update={"api_key": api_key})
        else:
            config = SimulatorConfig(
                mode=mode.value,
                latency_s=latency,
                jitter=jitter,
                jitter_kind=jitter_kind.value,
                latency_per_token_s=latency_per_token,
                capacity=capacity,
                capacity_schedule=capacity_schedule or (),
                retry_after_s=retry_after,
                send_retry_after=send_retry_after,
                rpm=rpm,
                tpm=tpm,
                error_rate=error_rate,
                overload_rate=overload_rate,
                timeout_rate=timeout_rate,
                hang_s=hang,
                malformed_rate=malformed_rate,
                truncated_rate=truncated_rate,
                schema_invalid_rate=schema_invalid_rate,
                api_key=api_key,
                seed=seed,
                embedding_dim=embedding_dim,
            )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        typer.echo(f"rowloom sim: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, host, port, exit_with_parent=exit_with_parent))


async def serve(config: SimulatorConfig, host: str, port: int, exit_with_parent: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or stdin EOF with `exit_with_parent`), printing where it listens."""
    from rowloom.bench.simulator import SimulatorServer  # deferred: simulator.py runs this module as __main__

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if exit_with_parent:
        # A parent that dies (even by SIGKILL) closes our stdin pipe, which makes fd 0 readable at EOF. The
        # loop watches the raw fd, so no thread holds sys.stdin's lock when the interpreter shuts down.
        def on_stdin() -> None:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                stop.set()

        loop.add_reader(0, on_stdin)
    async with SimulatorServer(config, host=host, port=port) as server:
        limits = f", rpm={config.rpm}" if config.rpm else ""
        limits += f", tpm={config.tpm}" if config.tpm else ""
        print(
            f"rowloom sim listening on {server.base_url} (mode={config.mode}, capacity={config.capacity}, "
            f"latency={config.latency_s}s{limits})",
            flush=True,
        )
        await stop.wait()


def main() -> None:
    """Entry point for `python -m rowloom.bench.simulator`."""
    typer.run(sim)
