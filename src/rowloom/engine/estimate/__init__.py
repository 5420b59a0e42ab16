"""`rowloom estimate`: what a run will take before it spends anything — requests, prompt and completion tokens,
cost and wall time, per column and in total. See docs/estimate.md.

The public surface is `estimate` and the figures it returns; how it measures lives in `passes`.
"""

from rowloom.engine.estimate.figures import ColumnEstimate, EndpointEstimate, Estimate, Span, Usage
from rowloom.engine.estimate.passes import DEFAULT_ROWS, EstimateArgumentError, estimate

__all__ = [
    "DEFAULT_ROWS",
    "ColumnEstimate",
    "EndpointEstimate",
    "Estimate",
    "EstimateArgumentError",
    "Span",
    "Usage",
    "estimate",
]
