"""`ResourceKey`: what one adaptive admission state is about — a provider, a model id and an API domain.

Owns identity only; aliases map onto keys in the controller, and nothing here knows limits or leases.
"""

from __future__ import annotations

from typing import Literal

Domain = Literal["chat", "embeddings"]


class ResourceKey:
    """One endpoint capacity: aliases that name the same provider, model and domain share it. Immutable.

    Keys index the admission state's dicts, read a few dozen times per request, so the hash and the label are
    computed once, when the key is made (a frozen dataclass's `__hash__` builds and hashes a tuple per read). A
    key is pickled as its three fields: string hashes differ between processes (a Ray worker's and the driver's).
    """

    __slots__ = ("_hash", "domain", "label", "model", "provider")
    provider: str
    model: str
    domain: str
    #: `provider/model` for chat, `provider/model [domain]` otherwise: a JSON-friendly display name.
    label: str

    def __init__(self, provider: str, model: str, domain: str = "chat"):
        base = f"{provider}/{model}"
        for name, value in (
            ("provider", provider),
            ("model", model),
            ("domain", domain),
            ("label", base if domain == "chat" else f"{base} [{domain}]"),
            ("_hash", hash((provider, model, domain))),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a ResourceKey is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a ResourceKey is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, ResourceKey):
            return NotImplemented
        return (self.provider, self.model, self.domain) == (other.provider, other.model, other.domain)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple:
        return ResourceKey, (self.provider, self.model, self.domain)

    def __repr__(self) -> str:
        return f"ResourceKey(provider={self.provider!r}, model={self.model!r}, domain={self.domain!r})"

    def __str__(self) -> str:
        return self.label
