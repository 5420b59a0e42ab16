"""The request path of one run: a client per provider, request admission per model, the reply cache, the batch
runners of `execution: batch` models, the executor.

Opened as an async context manager so every client connection is closed on every exit path; a `type: local`
provider's llama.cpp server is started on entry (before its client exists) and stopped on every exit path; the
reply cache is opened on entry and its queued writes committed on every exit path; batch runners pick up the
batches their journal says an earlier run left open on entry, and on exit stop polling, leaving the batches still
running to a later resume (`open_batches` lists them).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rowloom.concurrency.clock import Clock
from rowloom.config.dataset import DatasetConfig
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.errors import RowloomWarning
from rowloom.models.admission import LimitFactory, RequestAdmissionController
from rowloom.models.batch import BatchJournal, BatchRunner, BatchSettings, row_group_of
from rowloom.models.batch.journal import JOURNAL_FILE
from rowloom.models.budget import SpendBudget
from rowloom.models.cache import CacheUnavailable, ReplyCache, open_cache
from rowloom.models.clients import OpenAIClient, client_for
from rowloom.models.clients.openai_batch import OpenAIBatchApi
from rowloom.models.executor import AliasRoute, ModelRequestExecutor, RouteMember, register_alias
from rowloom.models.local import LocalModelServer
from rowloom.models.types import ChatClient
from rowloom.observe.events.batch import BATCH_KEY_PREFIX
from rowloom.observe.sinks import EventSink

#: Builds the client of one provider instead of `OpenAIClient`: called with the provider as requests see it (a
#: local one started, its `base_url` set) and the API key that provider's server requires (None for others).
ClientFactory = Callable[[ProviderConfig, str | None], ChatClient]


def effective_model(model: ModelConfig, provider: ProviderConfig) -> ModelConfig:
    """The model with its provider's default ceiling when it sets none (a local server's: from its slots)."""
    default = provider.default_max_parallel_requests()
    if model.max_parallel_requests is not None or default is None:
        return model
    return model.model_copy(update={"max_parallel_requests": default})


class RequestRuntime:
    """Owns the clients, the request admission controller and the executor; answers capacity and saturation.

    `clients` and `executor` exist once the runtime is entered (`async with RequestRuntime(...) as runtime:`).
    """

    def __init__(
        self,
        config: DatasetConfig,
        *,
        sink: EventSink,
        clock: Clock,
        limit_factory: LimitFactory | None = None,
        budget: SpendBudget | None = None,
        client_factory: ClientFactory | None = None,
        batch_folder: Path | None = None,
        written: frozenset[int] = frozenset(),
    ):
        """`limit_factory` replaces the configured adaptive limit of every key (a Ray worker's grants); `budget`
        charges every attempt and refuses one that would pass the run's budget; `client_factory` replaces the HTTP
        client of every provider (the dry client of `rowloom estimate`), whose replies are not the provider's: the
        reply cache and batch execution are then not used (requests go through the client one by one).
        `batch_folder` holds the batch journal (the run's output folder); None: batches are not resumable (a
        preview). `written` are the row groups already in the output: no cell of theirs asks for a batch line."""
        self.config = config
        self.client_factory = client_factory
        self.budget = budget
        self.sink = sink
        self.clock = clock
        settings = config.run.request_admission
        self.admission = RequestAdmissionController(settings, clock=clock, sink=sink, limit_factory=limit_factory)
        used = {c.model_alias for c in config.columns if c.model_alias}
        self._models: dict[str, AliasRoute] = {}
        self._pool_sizes: dict[str, int] = {}  # connections per provider: the ceilings of the models it serves
        for model in config.models:
            if model.alias not in used:
                continue
            members = []
            for member in model.members():
                provider = config.provider(member.model.provider)
                effective = effective_model(member.model, provider)
                members.append(RouteMember(effective, provider, member.tier == "fallback"))
                ceiling = effective.max_parallel_requests or settings.default_max_parallel_requests
                self._pool_sizes[provider.name] = self._pool_sizes.get(provider.name, 0) + ceiling
            self._models[model.alias] = AliasRoute(model if model.is_pool else None, tuple(members))
            register_alias(self.admission, model.alias, self._models[model.alias], "chat")
        self.clients: dict[str, ChatClient] = {}
        self.local_servers: dict[str, LocalModelServer] = {}  # by provider name, while entered
        self.cache: ReplyCache | None = None  # while entered, unless off or unusable
        self.batch_folder = batch_folder
        self.written = written
        self.batches: dict[str, BatchRunner] = {}  # by alias, while entered
        self.open_batches: dict[str, list[str]] = {}  # by alias: batches left running when the runtime closed
        self.executor: ModelRequestExecutor

    async def __aenter__(self) -> RequestRuntime:
        try:
            providers = {name: await self._open(name) for name in self._pool_sizes}
            if self.client_factory is None and self._pool_sizes:
                try:
                    self.cache = await asyncio.to_thread(open_cache, self.config.run.cache)
                except CacheUnavailable as exc:  # a cache that cannot be opened costs its savings, not the run
                    warnings.warn(str(exc), RowloomWarning, stacklevel=2)
            if self.client_factory is None:
                await self._start_batches()
        except BaseException:
            await self._close()
            raise
        self.executor = ModelRequestExecutor(
            admission=self.admission,
            clients=self.clients,
            models={},
            endpoints={
                # the provider as requests see it (a local one's URL is known only once its server started)
                alias: AliasRoute(
                    route.pool, tuple(replace(m, provider=providers[m.provider.name]) for m in route.members)
                )
                for alias, route in self._models.items()
            },
            config=self.config.run.request_admission,
            clock=self.clock,
            sink=self.sink,
            budget=self.budget,
            cache=self.cache,
            batches=self.batches,
        )
        return self

    async def _start_batches(self) -> None:
        """A batch runner for every `execution: batch` alias in use, each resuming the batches the journal says
        an earlier run left open."""
        journal = None if self.batch_folder is None else BatchJournal(self.batch_folder / JOURNAL_FILE)
        for alias, route in self._models.items():
            model = route.members[0].model
            settings = model.batch_settings
            if settings is None:
                continue
            client = self.clients[route.members[0].provider.name]
            assert isinstance(client, OpenAIClient)  # checked with the config: batch needs type openai
            label = self.admission.key_for(alias, domain="chat").label
            runner = BatchRunner(
                OpenAIBatchApi(client),
                alias,
                BatchSettings.of(settings),
                journal=journal,
                sink=self.sink,
                key=BATCH_KEY_PREFIX + label,
                clock=self.clock,
            )
            self.batches[alias] = runner
            await runner.start(lambda custom_id: row_group_of(custom_id) not in self.written)

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _open(self, name: str) -> ProviderConfig:
        """Start the provider's local server if it has one, then its client; the provider as requests see it."""
        provider = self.config.provider(name)
        api_key = None
        if provider.type == "local":
            server = self.local_servers[name] = LocalModelServer(provider)
            await server.start()
            provider, api_key = server.provider, server.api_key
        if self.client_factory is not None:
            self.clients[name] = self.client_factory(provider, api_key)
        else:
            pool_size = max(8, self._pool_sizes[name] + 4)
            self.clients[name] = client_for(provider, pool_size=pool_size, api_key=api_key)
        return provider

    async def _close(self) -> None:
        try:
            runners, self.batches = self.batches, {}
            for alias, runner in runners.items():  # before the clients they poll with
                if running := await runner.close():
                    self.open_batches[alias] = running
            for client in self.clients.values():
                await client.aclose()
        finally:
            cache, self.cache = self.cache, None
            if cache is not None:
                await asyncio.to_thread(cache.close)
            servers, self.local_servers = list(self.local_servers.values()), {}
            for server in servers:
                server.terminate()  # all signalled first: a cancellation while waiting below leaves none running
            for server in servers:
                await server.stop()

    def capacity(self, alias: str) -> int:
        """The current request limit of a model (its endpoint's adaptive limit). A batch model's requests wait in
        batches, not on an endpoint: as many as the memory bound lets rows wait, up to a batch's size."""
        runner = self.batches.get(alias)
        if runner is not None:
            return max(1, min(runner.settings.max_requests, self.config.run.max_admitted_rows))
        return self.admission.capacity(alias)

    def saturated(self, alias: str) -> bool:
        """Whether a model's endpoint has queued waiters or is cooling down."""
        return self.admission.saturated(alias)

    def backing_off(self, alias: str) -> int:
        """Requests of a model sleeping before a retry (they hold a task, not a request slot)."""
        return self.executor.backing_off(alias)

    def cooling(self, alias: str) -> bool:
        """Whether a model's endpoint is paused by a cooldown."""
        return self.admission.cooling(alias)

    def down(self, alias: str) -> bool:
        """Whether a model's endpoint is down: its requests wait while one probe at a time goes out."""
        return self.admission.down(alias)

    def snapshot(self) -> dict[str, Any]:
        """Per endpoint: configured caps, current limits, in-flight and observed maxima."""
        return self.admission.snapshot()
