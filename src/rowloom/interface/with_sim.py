"""`rowloom run --with-sim SPEC`: a provider simulator on the port of every loopback provider, for one run.

Owns the SPEC (`latency_s=0.2,capacity=16`: simulator settings, `;` between the entries of a list setting) and
turning its mistakes — an unknown setting, a bad value, a port already taken — into one line each.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlparse

import typer

from rowloom.config.dataset import DatasetConfig
from rowloom.interface import messages

#: The `--with-sim SPEC` option of every command that runs a config (run, estimate).
WithSimOption = Annotated[
    str | None,
    typer.Option(
        "--with-sim",
        help="Start the provider simulator on each loopback provider's port, e.g. 'latency_s=0.2,capacity=16'.",
    ),
]

EXIT_USAGE = 2  # a mistake in the command line, as click reports its own
EXIT_ERROR = 1
LIST_SETTINGS = ("capacity_schedule", "outages")  # their entries are separated by ';' in SPEC
NOT_SETTINGS = frozenset({"models"})  # rowloom sets it: the models of the config


class SpecError(ValueError):
    """A --with-sim SPEC that is not a list of known settings with valid values; the message says the fix."""


def settings() -> list[str]:
    """The settings a SPEC may hold, in the simulator's order."""
    from rowloom.bench.sim_config import SimulatorConfig

    return [name for name in SimulatorConfig.model_fields if name not in NOT_SETTINGS]


def parse_spec(spec: str) -> dict[str, str]:
    """`key=value,…` into settings, checking every key is one (with the nearest valid key for a typo)."""
    options: dict[str, str] = {}
    valid = settings()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SpecError(f"{item!r} is not key=value (e.g. latency_s=0.2,capacity=16)")
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            guess = f" (did you mean {near[0]!r}?)" if near else ""
            raise SpecError(f"unknown setting {key!r}{guess}; valid settings: {', '.join(valid)}")
        options[key] = value.strip()
    for listed in LIST_SETTINGS:
        if listed in options:
            options[listed] = options[listed].replace(";", ",")
    return options


def simulator_config(config: DatasetConfig, spec: str):  # -> SimulatorConfig (imported lazily: the bench extra)
    """The simulator's settings for a run of `config`: SPEC's, serving every model the config names."""
    from pydantic import ValidationError

    from rowloom.bench.sim_config import SimulatorConfig

    options = parse_spec(spec)
    try:
        return SimulatorConfig(models=tuple({m.model for m in config.models}) or ("sim-model",), **options)
    except ValidationError as exc:
        raise SpecError("; ".join(_problem(e, options, SimulatorConfig) for e in exc.errors())) from None


#: pydantic's error types a SPEC's value can hit, said the way the rest of the CLI speaks.
_NOT_A = {
    "int_parsing": "is not a valid integer",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a valid number",
    "bool_parsing": "is not true or false",
}


def _problem(error: dict, options: dict[str, str], model: type) -> str:
    """`capacity='lots' is not a valid integer; give e.g. capacity=64` for one of pydantic's errors."""
    key = str(error["loc"][0]) if error["loc"] else ""
    if key not in options:
        return f"{key or 'settings'}: {messages.said(error['msg'])}"
    what = _NOT_A.get(error["type"])
    said = f"{key}={options[key]!r} {what}" if what else f"{key}={options[key]!r}: {messages.said(error['msg'])}"
    default = model.model_fields[key].default if key in model.model_fields else None
    example = f"; give e.g. {key}={default}" if type(default) in (int, float) else ""
    return said + example


def loopback_ports(config: DatasetConfig) -> dict[int, list[str]]:
    """The port of every provider whose base_url is on this machine, with the providers on it."""
    ports: dict[int, list[str]] = {}
    for provider in config.providers:
        url = urlparse(provider.base_url)
        if url.hostname in ("127.0.0.1", "localhost") and url.port:
            ports.setdefault(url.port, []).append(provider.name)
    return ports


@contextlib.contextmanager
def simulators(config: DatasetConfig, spec: str | None) -> Iterator[None]:
    """Start a provider simulator on the port of every loopback provider (for demos and benchmarks), for as long
    as the block runs. Every mistake is one `error:` line and an exit."""
    if spec is None:
        yield
        return
    from rowloom.bench.sim_process import SimulatorPortInUse, SimulatorProcess, SimulatorProcessError

    try:
        sim_config = simulator_config(config, spec)
    except SpecError as exc:
        messages.error(f"--with-sim: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    with contextlib.ExitStack() as stack:
        for port, providers in loopback_ports(config).items():
            names = ", ".join(providers)
            try:
                stack.enter_context(SimulatorProcess(sim_config, port=port))
            except SimulatorPortInUse:
                messages.error(
                    f"port {port} (base_url of provider {names}) is already in use, so --with-sim cannot start a "
                    f"simulator there; pick another port in base_url, stop what listens on 127.0.0.1:{port}, or "
                    "drop --with-sim to use the server already there"
                )
                raise typer.Exit(EXIT_ERROR) from None
            except SimulatorProcessError as exc:
                last = [line for line in str(exc).splitlines() if line.strip()][-1]
                messages.error(f"cannot start the simulator on port {port} (provider {names}): {last.strip()}")
                raise typer.Exit(EXIT_ERROR) from None
            messages.status(f"simulator on 127.0.0.1:{port} ({sim_config.mode}, capacity {sim_config.capacity})")
        yield
