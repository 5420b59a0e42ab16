"""Concurrency-limit algorithms behind one `Limit` protocol: AIMD, latency, composite (minimum), fixed."""

from rowloom.models.admission.limits.aimd import AIMDLimit
from rowloom.models.admission.limits.base import Limit, next_epoch
from rowloom.models.admission.limits.composite import CompositeLimit
from rowloom.models.admission.limits.factory import limit_from_config
from rowloom.models.admission.limits.fixed import FixedLimit
from rowloom.models.admission.limits.latency import LatencyLimit

__all__ = [
    "AIMDLimit",
    "CompositeLimit",
    "FixedLimit",
    "LatencyLimit",
    "Limit",
    "limit_from_config",
    "next_epoch",
]
