"""Concurrency-limit algorithms behind one `Limit` protocol: AIMD, gradient, composite (minimum), fixed."""

from rowloom.models.admission.limits.aimd import AIMDLimit
from rowloom.models.admission.limits.base import Limit, next_epoch
from rowloom.models.admission.limits.composite import CompositeLimit
from rowloom.models.admission.limits.factory import limit_from_config
from rowloom.models.admission.limits.fixed import FixedLimit
from rowloom.models.admission.limits.gradient import GradientLimit

__all__ = [
    "AIMDLimit",
    "CompositeLimit",
    "FixedLimit",
    "GradientLimit",
    "Limit",
    "limit_from_config",
    "next_epoch",
]
