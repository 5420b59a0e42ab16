"""`ResourceKey`: what one adaptive admission state is about — a provider, a model id and an API domain.

Owns identity only; aliases map onto keys in the controller, and nothing here knows limits or leases.
"""

from __future__ import annotations

from typing import Literal

Domain = Literal["chat", "embeddings"]


class ResourceKey:
    """One endpoint capacity: aliases that name the same provider, model and domain share it. Immutable.

    Keys index the admission state's dicts, read a few dozen times per request, so a key is interned: making a
    key of the same three fields again gives the very same object, and equality and hashing are by identity (in
    C; a Python `__hash__` was ~30 calls per request). A key is pickled as its three fields, so unpickling one
    in any process gives that process's own key of those fields (string hashes differ between processes, a Ray
    worker's and the driver's).
    """

    __slots__ = ("domain", "label", "model", "provider")
    provider: str
    model: str
    domain: str
    #: `provider/model` for chat, `provider/model [domain]` otherwise: a JSON-friendly display name.
    label: str

    def __new__(cls, provider: str, model: str, domain: str = "chat") -> ResourceKey:
        fields = (provider, model, domain)
        key = _INTERNED.get(fields)
        if key is not None:
            return key
        key = super().__new__(cls)
        base = f"{provider}/{model}"
        for name, value in (
            ("provider", provider),
            ("model", model),
            ("domain", domain),
            ("label", base if domain == "chat" else f"{base} [{domain}]"),
        ):
            object.__setattr__(key, name, value)
        return _INTERNED.setdefault(fields, key)  # another thread's, if it made the same key first

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a ResourceKey is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a ResourceKey is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple:
        return ResourceKey, (self.provider, self.model, self.domain)

    def __repr__(self) -> str:
        return f"ResourceKey(provider={self.provider!r}, model={self.model!r}, domain={self.domain!r})"

    def __str__(self) -> str:
        return self.label


#: (provider, model, domain) -> its one key in this process (a handful per run: one per endpoint and domain)
_INTERNED: dict[tuple[str, str, str], ResourceKey] = {}
