"""Scale-out on Ray: row groups across worker actors, one request-admission authority per endpoint.

Ray is optional (`pip install 'rowloom[ray]'`) and imported only inside this package, only when used.
"""

from __future__ import annotations

from types import ModuleType

from rowloom.errors import RowloomError


class RayUnavailable(RowloomError):
    """`executor="ray"` was asked for but Ray is not installed."""


def import_ray() -> ModuleType:
    """The `ray` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "executor 'ray' needs Ray, which is not installed; install it with: pip install 'rowloom[ray]'"
        ) from None
    return ray
