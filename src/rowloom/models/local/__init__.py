"""Local models: llama.cpp's server (from the `local` extra) run by rowloom for `type: local` providers."""

from rowloom.models.local.errors import (
    INSTALL_MODEL,
    INSTALL_RUNTIME,
    LocalModelNotFound,
    LocalPortUnavailable,
    LocalRuntimeMissing,
    LocalServerError,
    LocalServerStartFailed,
)
from rowloom.models.local.model_file import packaged_model_path, resolve_model_path
from rowloom.models.local.server import LocalModelServer, require_runtime

__all__ = [
    "INSTALL_MODEL",
    "INSTALL_RUNTIME",
    "LocalModelNotFound",
    "LocalModelServer",
    "LocalPortUnavailable",
    "LocalRuntimeMissing",
    "LocalServerError",
    "LocalServerStartFailed",
    "packaged_model_path",
    "require_runtime",
    "resolve_model_path",
]
