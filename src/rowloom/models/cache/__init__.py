"""The reply cache across runs: a request's reply kept under a hash of what decides it, so a rerun pays only for
the requests that changed. Sits between the executor and admission: a hit takes no lease, no budget, no retry.
"""

from rowloom.models.cache.reply_cache import ReplyCache, open_cache
from rowloom.models.cache.settings import default_folder, resolve, with_cache
from rowloom.models.cache.store import CacheUnavailable, ReplyStore

__all__ = ["CacheUnavailable", "ReplyCache", "ReplyStore", "default_folder", "open_cache", "resolve", "with_cache"]
