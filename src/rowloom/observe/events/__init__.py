"""Typed, immutable, JSON-serialisable events: the record of every scheduling decision."""

from rowloom.observe.events.base import Event, event_from_dict, event_types, register_event

__all__ = ["Event", "event_from_dict", "event_types", "register_event"]
