"""The request path of one run: a client per provider, request admission per model, the executor.

Opened as an async context manager so every client connection is closed on every exit path.
"""

from __future__ import annotations

from typing import Any

from rowloom.config.dataset import DatasetConfig
from rowloom.models.admission import RequestAdmissionController
from rowloom.models.clients.openai import OpenAIClient
from rowloom.models.executor import ModelRequestExecutor
from rowloom.models.types import ChatClient
from rowloom.observe.clock import Clock
from rowloom.observe.sinks import EventSink


class RequestRuntime:
    """Owns the clients, the request admission controller and the executor; answers capacity and pressure."""

    def __init__(self, config: DatasetConfig, *, sink: EventSink, clock: Clock):
        self.config = config
        self.sink = sink
        self.clock = clock
        settings = config.run.request_admission
        self.admission = RequestAdmissionController(settings, clock=clock, sink=sink)
        used = {c.model_alias for c in config.columns if c.model_alias}
        ceilings: dict[str, int] = {}
        for model in config.models:
            if model.alias not in used:
                continue
            self.admission.register_model(model.alias, model, config.provider(model.provider))
            ceiling = model.max_parallel_requests or settings.default_max_parallel_requests
            ceilings[model.provider] = ceilings.get(model.provider, 0) + ceiling
        self.clients: dict[str, ChatClient] = {
            name: OpenAIClient(config.provider(name), pool_size=max(8, total + 4)) for name, total in ceilings.items()
        }
        self.executor = ModelRequestExecutor(
            admission=self.admission,
            clients=self.clients,
            models={m.alias: (m, config.provider(m.provider)) for m in config.models if m.alias in used},
            config=settings,
            clock=clock,
            sink=sink,
        )

    async def __aenter__(self) -> RequestRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients.values():
            await client.aclose()

    def capacity(self, alias: str) -> int:
        """The current request limit of a model (its endpoint's adaptive limit)."""
        return self.admission.capacity(alias)

    def pressure(self, alias: str) -> bool:
        """Whether a model's endpoint has queued waiters or is cooling down."""
        return self.admission.pressure(alias)

    def snapshot(self) -> dict[str, Any]:
        """Per endpoint: configured caps, current limits, in-flight and observed maxima."""
        return self.admission.snapshot()
