"""Simulator outages over real loopback sockets: refused connections, cut connections, flapping, outages
without end, and the same port afterwards. Windows count from the simulator's own start (`elapsed_s`); each
check sits at least 0.2 s from a window edge. The timers' exact edges (flapping, restarts) are checked in virtual
time in test_simulator_limits.py."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import aiohttp
import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorProcess, SimulatorServer

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "Name a river."}]}


async def until(sim: SimulatorServer, at_s: float) -> None:
    """Sleep until `at_s` seconds on the simulator's schedule clock."""
    await asyncio.sleep(max(0.0, at_s - sim.elapsed_s))


async def probe(url: str) -> int | str:
    """POST one chat completion on a fresh connection: the status, or the name of the connection error."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        try:
            async with http.post(f"{url}/chat/completions", json=BODY) as response:
                await response.read()
                return response.status
        except aiohttp.ClientConnectorError as exc:
            assert exc.os_error.errno == errno.ECONNREFUSED, exc
            return "refused"


async def test_outage_refuses_connections_then_serves_again_on_the_same_port():
    async with SimulatorServer(SimulatorConfig(latency_s=0, outages="0.3+0.6")) as sim:
        port = sim.port
        assert await probe(sim.base_url) == 200
        await until(sim, 0.5)
        assert sim.down
        with pytest.raises(aiohttp.ClientConnectorError):  # refused at connect: no HTTP status at all
            async with aiohttp.ClientSession() as http, http.post(f"{sim.base_url}/chat/completions", json=BODY):
                pass
        await until(sim, 1.1)
        assert not sim.down
        assert sim.port == port
        assert await probe(sim.base_url) == 200
        stats = await sim.stats()
    assert stats["outages"] == 1
    assert stats["by_status"] == {"200": 2}
    assert stats["in_flight"] == 0


async def test_outage_cuts_keep_alive_connections_and_requests_in_service():
    async with SimulatorServer(SimulatorConfig(latency_s=0.8, outages="0.3+0.2")) as sim:
        # A keep-alive connection that has served one request and sits idle, as in a client's pool.
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: sim\r\nConnection: keep-alive\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(len(b'{"status":"ok"}'))

        async with aiohttp.ClientSession() as http:
            # A request in service when the window opens (its 0.8 s of service outlast the window's start).
            in_service = asyncio.create_task(http.post(f"{sim.base_url}/chat/completions", json=BODY))
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                await asyncio.wait_for(in_service, timeout=3.0)
        assert await asyncio.wait_for(reader.read(), timeout=3.0) == b""  # the idle connection was closed
        writer.close()
        # The server closed first, so its port has connections in TIME_WAIT: SO_REUSEADDR lets it listen again.
        await until(sim, 0.7)
        assert await probe(sim.base_url) == 200
        stats = await sim.stats()
    assert stats["outages"] == 1
    assert stats["outage_connections_cut"] >= 2
    assert stats["outage_requests_cut"] == 1
    assert stats["by_status"] == {"200": 1}  # the cut request has no status: dropped, not abandoned (499)


async def test_reset_restarts_the_outage_schedule():
    async with SimulatorServer(SimulatorConfig(latency_s=0, outages="0.2+0.6")) as sim:
        await until(sim, 1.0)
        assert not sim.down
        sim.reset()
        await until(sim, 0.4)
        assert sim.down
        assert await probe(sim.base_url) == "refused"
        await until(sim, 1.0)
        assert await probe(sim.base_url) == 200


async def test_permanent_outage_stays_down_until_ended_from_outside():
    async with SimulatorServer(SimulatorConfig(latency_s=0, outages="0+inf")) as sim:
        assert sim.down
        assert await probe(sim.base_url) == "refused"
        await asyncio.sleep(0.3)
        assert await probe(sim.base_url) == "refused"
        assert await sim.end_outage()
        assert await probe(sim.base_url) == 200
        assert not await sim.end_outage()  # nothing left to end


def _post(url: str) -> Any:
    return asyncio.run(probe(url))


def test_process_down_for_good_answers_stats_and_frees_its_port_for_a_healthy_simulator():
    with SimulatorProcess(SimulatorConfig(latency_s=0, outages="0+inf")) as down:
        assert _post(down.base_url) == "refused"
        stats = down.stats()  # over the control pipe: HTTP is down with the endpoint
        assert (stats["down"], stats["outages"]) == (True, 1)
        down.reset()  # works during the outage too; the window restarts and has no end
        assert _post(down.base_url) == "refused"
        # While the first one is still alive, a healthy simulator takes the same port (a resumed run's endpoint).
        with SimulatorProcess(SimulatorConfig(latency_s=0), port=down.port) as healthy:
            assert _post(healthy.base_url) == 200
            assert healthy.stats()["by_status"] == {"200": 1}
        assert down.stats()["requests_total"] == 0


def test_process_outage_is_ended_over_the_control_pipe():
    with SimulatorProcess(SimulatorConfig(latency_s=0, outages="0+inf")) as sim:
        assert _post(sim.base_url) == "refused"
        assert sim.end_outage() is True
        assert _post(sim.base_url) == 200
        assert sim.stats()["down"] is False
