"""Request admission: when may a model request go out — per endpoint limits, waiter queues, cooldowns, caps.

The public names are re-exported here; everything else in this package is an implementation detail.
"""

from rowloom.models.admission.caps import CapTable
from rowloom.models.admission.controller import RequestAdmissionController
from rowloom.models.admission.cooldown import Cooldown, Pause
from rowloom.models.admission.errors import AdmissionClosed, AdmissionTimeout
from rowloom.models.admission.health import (
    EndpointHealth,
    EndpointRejected,
    EndpointUnavailable,
    EndpointUnreachable,
)
from rowloom.models.admission.keys import Domain, ResourceKey
from rowloom.models.admission.leases import LeaseLedger, RequestLease
from rowloom.models.admission.limits import (
    AIMDLimit,
    CompositeLimit,
    FixedLimit,
    LatencyLimit,
    Limit,
    limit_from_config,
)
from rowloom.models.admission.rate_budget import RateBudget, TokenBucket
from rowloom.models.admission.registry import EndpointRegistry, LimitBounds, LimitFactory

__all__ = [
    "AIMDLimit",
    "AdmissionClosed",
    "AdmissionTimeout",
    "CapTable",
    "CompositeLimit",
    "Cooldown",
    "Domain",
    "EndpointHealth",
    "EndpointRegistry",
    "EndpointRejected",
    "EndpointUnavailable",
    "EndpointUnreachable",
    "FixedLimit",
    "LatencyLimit",
    "LeaseLedger",
    "Limit",
    "LimitBounds",
    "LimitFactory",
    "Pause",
    "RateBudget",
    "RequestAdmissionController",
    "RequestLease",
    "ResourceKey",
    "TokenBucket",
    "limit_from_config",
]
