"""`ResourceKey`: what one adaptive admission state is about — a provider, a model id and an API domain.

Owns identity only; aliases map onto keys in the controller, and nothing here knows limits or leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Domain = Literal["chat", "embeddings"]


@dataclass(frozen=True, slots=True)
class ResourceKey:
    """One endpoint capacity: aliases that name the same provider, model and domain share it."""

    provider: str
    model: str
    domain: str = "chat"

    @property
    def label(self) -> str:
        """`provider/model` for chat, `provider/model [domain]` otherwise: a JSON-friendly display name."""
        base = f"{self.provider}/{self.model}"
        return base if self.domain == "chat" else f"{base} [{self.domain}]"

    def __str__(self) -> str:
        return self.label
