"""The errors request admission raises to a waiting caller: no slot before the deadline, or admission closed.

Owns their wording only; the controller decides when they happen.
"""

from __future__ import annotations

from rowloom.errors import RowloomError
from rowloom.models.admission.endpoint import EndpointState


class AdmissionTimeout(RowloomError, TimeoutError):
    """No request slot was free before the acquire's deadline."""


class AdmissionClosed(RowloomError):
    """The controller was reset or closed while a request waited for a slot."""


def saturated(
    state: EndpointState, alias: str | None, *, in_flight: int, cooling: bool, why: str = ""
) -> AdmissionTimeout:
    """The timeout for a waiter of `state` (through `alias`), saying how full the endpoint was."""
    name = f"model alias {alias!r} ({state.label})" if alias else state.label
    return AdmissionTimeout(
        f"no request slot for {name} before the deadline {why}".rstrip()
        + f": the endpoint is saturated{' and is cooling down' if cooling else ''} (limit {state.limit.limit}, "
        f"{in_flight} in flight, {len(state.queue)} waiting)"
    )
