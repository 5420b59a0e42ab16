"""`EndpointRegistry`: which aliases name which resource key, and the one adaptive state behind each key.

Owns registration (limits built from the config, budgets, cap membership); makes no admission decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rowloom.concurrency.clock import Clock
from rowloom.config.models import ModelConfig, ProviderConfig
from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.errors import RowloomError
from rowloom.models.admission.caps import CapTable
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.endpoint import AliasBinding, EndpointState
from rowloom.models.admission.health import EndpointHealth, public_url
from rowloom.models.admission.keys import ResourceKey
from rowloom.models.admission.limits import Limit
from rowloom.models.admission.pools import EndpointPool, Member


@dataclass(frozen=True, slots=True)
class LimitBounds:
    """Where a key's limit may move: `ceiling` (`max_parallel_requests` or the default), `start` (where it
    begins) and `floor` (below which it never goes)."""

    ceiling: int
    start: int
    floor: int


LimitFactory = Callable[[ResourceKey, LimitBounds], Limit]
"""Builds the limit of a key from the key and its bounds."""


class EndpointRegistry:
    """Aliases -> keys -> endpoint states. Aliases of one provider, model and domain share a state."""

    def __init__(self, config: RequestAdmissionConfig, limit_factory: LimitFactory, clock: Clock):
        self.config = config
        self._limit_factory = limit_factory
        self._clock = clock
        self._caps = CapTable(config.caps)
        self._states: dict[ResourceKey, EndpointState] = {}
        self._aliases: dict[tuple[str, str], ResourceKey] = {}
        self._pools: dict[tuple[str, str], EndpointPool] = {}

    def register(
        self, alias: str, model: ModelConfig, provider: ProviderConfig, domain: str, *, pooled: bool = False
    ) -> EndpointState:
        """Bind `alias` (for `domain`) to its key's state, creating the state on first use. Idempotent.

        `pooled`: the alias is a pool's and this is one of its endpoints — the state learns the alias's ceiling and
        budgets, but the alias resolves to its pool (`register_pool`), not to this key."""
        if model.provider != provider.name:
            raise RowloomError(
                f"model alias {alias!r} names provider {model.provider!r} but was registered with {provider.name!r}"
            )
        key = ResourceKey(provider.name, model.model, domain)
        if not pooled:
            known = self._aliases.get((alias, domain))
            if known is not None and known != key:
                raise RowloomError(f"model alias {alias!r} is already registered for {known.label} ({domain})")
            self._aliases[(alias, domain)] = key
        ceiling = model.max_parallel_requests or self.config.default_max_parallel_requests
        bounds = LimitBounds(ceiling, min(self.config.initial_limit, ceiling), min(self.config.min_limit, ceiling))
        if provider.type == "local":
            # rowloom started this server to decode `parallel_slots` requests together: fewer leaves its batch
            # part empty, more only waits in its queue. The limit starts there and never goes below it.
            slots = min(provider.parallel_slots, ceiling)
            bounds = LimitBounds(ceiling, slots, max(bounds.floor, slots))
        state = self._states.get(key)
        if state is None:
            cooldown = Cooldown(
                threshold=self.config.consecutive_429_pause,
                default_s=self.config.default_cooldown_s,
                max_s=self.config.max_retry_after_s,
            )
            health = EndpointHealth(
                provider=provider.name,
                model=model.model,
                url=public_url(provider.base_url),
                down_after=self.config.down_after_failures,
                probe_backoff_s=self.config.probe_backoff_s,
                probe_backoff_max_s=self.config.probe_backoff_max_s,
                breaker_s=self.config.circuit_breaker_s,
                grace_s=self.config.startup_grace_s,
            )
            state = self._states[key] = EndpointState(
                key, self._limit_factory(key, bounds), cooldown, ceiling, self._clock, health
            )
        elif ceiling > state.ceiling and state.issued == 0:
            state.ceiling = ceiling  # before any traffic the shared limit may still take the larger ceiling
            state.limit = self._limit_factory(key, bounds)
            state.observed_max_limit = state.limit.limit
        state.aliases[alias] = AliasBinding(model.max_parallel_requests, model.rpm, model.tpm)
        state.note_aliases()
        state.refresh_budget(burst_s=self.config.rate_burst_s, now=self._clock.now())
        state.caps = self._caps.attach(key)
        for member in {k for cap in state.caps for k in cap.members}:
            self._states[member].peers = [self._states[k] for k in self._caps.peers(member)]
        return state

    def register_pool(
        self, alias: str, members: Sequence[tuple[ResourceKey, bool]], spill_after_s: float, domain: str
    ) -> EndpointPool:
        """Make `alias` (for `domain`) a pool of keys its endpoints were registered on (`pooled`), each with
        whether it is a fallback. Idempotent."""
        pool = self._pools.get((alias, domain))
        if pool is not None:
            return pool
        if (alias, domain) in self._aliases:
            raise RowloomError(f"model alias {alias!r} is already registered for one endpoint ({domain})")
        parts = [Member(alias, self._states[key], fallback) for key, fallback in members]
        pool = self._pools[(alias, domain)] = EndpointPool(alias, parts, spill_after_s, self._clock)
        for member in parts:
            member.state.pools.append(pool)
        return pool

    def pool(self, alias_or_key: str | ResourceKey, domain: str) -> EndpointPool | None:
        """The pool an alias names (for `domain`), or None for a single-endpoint alias or a key."""
        return None if isinstance(alias_or_key, ResourceKey) else self._pools.get((alias_or_key, domain))

    def pools(self) -> Iterator[EndpointPool]:
        return iter(list(self._pools.values()))

    def resolve(self, alias_or_key: str | ResourceKey, domain: str) -> tuple[EndpointState, str | None]:
        """The state behind an alias (for `domain`) or a key, and the alias (None for a key)."""
        if isinstance(alias_or_key, ResourceKey):
            key, alias = alias_or_key, None
        else:
            key, alias = self._aliases.get((alias_or_key, domain)), alias_or_key
        state = self._states.get(key) if key is not None else None
        if state is None:
            raise RowloomError(
                f"{alias_or_key!s} is not registered with request admission for {domain!r}; "
                "call register_model() for it first"
            )
        return state, alias

    def state(self, key: ResourceKey) -> EndpointState:
        return self._states[key]

    def __iter__(self) -> Iterator[EndpointState]:
        return iter(list(self._states.values()))
