"""Where the reply cache lives and whether it is used: `run.cache`, else the environment, else the defaults.

`ROWLOOM_CACHE` (a mode: readwrite, read, write, off) and `ROWLOOM_CACHE_DIR` (a folder) stand in for the unset
`run.cache.mode` and `run.cache.path`; without them the cache is read and written in the user cache folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import get_args

from rowloom.config.cache import CacheConfig, CacheMode
from rowloom.config.dataset import DatasetConfig
from rowloom.errors import ConfigError, ConfigProblem

MODE_ENV = "ROWLOOM_CACHE"
FOLDER_ENV = "ROWLOOM_CACHE_DIR"
MODES: tuple[str, ...] = get_args(CacheMode)


def default_folder() -> Path:
    """`$ROWLOOM_CACHE_DIR`, else the platform's user cache folder + `rowloom` (`$XDG_CACHE_HOME` or ~/.cache on
    Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    if folder := os.environ.get(FOLDER_ENV):
        return Path(folder).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "rowloom"


def resolve(cache: CacheConfig) -> CacheConfig:
    """`cache` with its mode and path filled in from the environment and the defaults."""
    mode = cache.mode
    if mode is None:
        mode = os.environ.get(MODE_ENV, "").strip().lower() or "readwrite"
        if mode not in MODES:
            raise ConfigError(
                ConfigProblem(
                    "run.cache.mode", f"${MODE_ENV} is {mode!r}", f"set it to one of {', '.join(MODES)}, or unset it"
                )
            )
    path = cache.path or str(default_folder())
    return cache.model_copy(update={"mode": mode, "path": path})


def with_cache(config: DatasetConfig, *, mode: str | None = None, path: str | None = None) -> DatasetConfig:
    """`config` with `run.cache` resolved here (so a Ray worker uses the cache this process chose), `mode` and
    `path` (the command line's) replacing the config's when given."""
    cache = config.run.cache.model_copy(update={k: v for k, v in (("mode", mode), ("path", path)) if v is not None})
    run = config.run.model_copy(update={"cache": resolve(cache)})
    return config.model_copy(update={"run": run})
