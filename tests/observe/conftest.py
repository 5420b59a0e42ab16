"""Fixtures for observability tests: a fast provider simulator on 127.0.0.1."""

from __future__ import annotations

import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture
async def sim():
    async with SimulatorServer(SimulatorConfig(latency_s=0.005, capacity=16, models=("sim-small",))) as server:
        yield server
