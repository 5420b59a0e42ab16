"""rowloom: synthetic datasets from LLMs, scheduled to keep every endpoint as busy as it can bear.

The public API is this short list (imported lazily, so `import rowloom` stays cheap); the rest is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "rowloom.errors",
    "RowloomError": "rowloom.errors",
    "RunAborted": "rowloom.errors",
    "BudgetReached": "rowloom.errors",
    "UserCodeError": "rowloom.errors",
    "DatasetConfig": "rowloom.config",
    "DatasetBuilder": "rowloom.config.builder",
    "ModelConfig": "rowloom.config",
    "ProviderConfig": "rowloom.config",
    "RunConfig": "rowloom.config",
    "DropRow": "rowloom.engine.generators.base",
    "JobResult": "rowloom.engine.job",
    "agenerate": "rowloom.interface.api",
    "apreview": "rowloom.interface.api",
    "generate": "rowloom.interface.api",
    "preview": "rowloom.interface.api",
}

__all__ = [  # noqa: RUF022 - grouped like _EXPORTS
    "ConfigError",
    "RowloomError",
    "RunAborted",
    "BudgetReached",
    "UserCodeError",
    "DatasetConfig",
    "DatasetBuilder",
    "ModelConfig",
    "ProviderConfig",
    "RunConfig",
    "DropRow",
    "JobResult",
    "agenerate",
    "apreview",
    "generate",
    "preview",
    "__version__",
]

if TYPE_CHECKING:
    from rowloom.config import DatasetConfig, ModelConfig, ProviderConfig, RunConfig
    from rowloom.config.builder import DatasetBuilder
    from rowloom.engine.generators.base import DropRow
    from rowloom.engine.job import JobResult
    from rowloom.errors import BudgetReached, ConfigError, RowloomError, RunAborted, UserCodeError
    from rowloom.interface.api import agenerate, apreview, generate, preview


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rowloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
