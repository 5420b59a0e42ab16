"""Typed, immutable, JSON-serialisable events: the record of every scheduling decision.

Importing this package registers every event kind, so `event_from_dict` can read any of them back.
"""

from rowloom.observe.events import batch, request, scheduler, snapshots  # noqa: F401 - registers the event kinds
from rowloom.observe.events.base import Event, event_from_dict, event_types, register_event

__all__ = ["Event", "event_from_dict", "event_types", "register_event"]
