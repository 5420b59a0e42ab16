"""Fixtures for feature tests: a provider simulator on 127.0.0.1 serving a chat and an embedding model."""

from __future__ import annotations

import pytest

from rowloom.bench.simulator import SimulatorConfig, SimulatorServer

from .helpers import CHAT_MODEL, EMBED_MODEL


@pytest.fixture
async def sim():
    config = SimulatorConfig(latency_s=0.002, capacity=64, models=(CHAT_MODEL, EMBED_MODEL))
    async with SimulatorServer(config) as server:
        yield server
