"""Outage windows of the simulated provider: their text form (`"3+20,40+inf"`, flapping `"5:5:60"`) and the
loop timers that say when the endpoint is down. Owns no sockets: `SimulatorServer` closes and reopens them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable

Window = tuple[float, float]  # (start, duration) in seconds since start or the last reset; duration may be inf

# A flap spec with tiny periods over a long span would expand into millions of timers; no test needs that.
MAX_WINDOWS = 10_000


def flap_windows(up_s: float, down_s: float, until_s: float) -> list[Window]:
    """Windows of a flapping endpoint: up `up_s`, down `down_s`, repeated from t=0 until `until_s` (up after).

    A window that would run past `until_s` is cut short there, so the endpoint is up from `until_s` on.
    """
    if not (up_s > 0 and down_s > 0 and math.isfinite(up_s + down_s)):
        raise ValueError(f"flap up and down times must be finite numbers > 0, got up={up_s} down={down_s}")
    if not (until_s > 0 and math.isfinite(until_s)):
        raise ValueError(f"flap end time must be a finite number > 0, got {until_s}")
    if until_s / (up_s + down_s) > MAX_WINDOWS:
        raise ValueError(f"flap {up_s:g}:{down_s:g}:{until_s:g} makes more than {MAX_WINDOWS} windows")
    windows: list[Window] = []
    start = up_s
    while start < until_s:
        windows.append((start, min(down_s, until_s - start)))
        start += down_s + up_s
    return windows


def parse_outages(text: str) -> list[Window]:
    """Parse `"3+20,40+5"` (down 20 s from t=3 s and 5 s from t=40 s), `"3+inf"` (down for good from t=3 s)
    and flapping entries `"UP:DOWN:UNTIL"` (`"5:5:60"`: up 5 s, down 5 s, ... until t=60 s); entries mix.

    An empty text means no outages (it is what `format_outages` writes for none). Raises `ValueError` naming
    the bad entry; the windows come back sorted and checked by `check_outages`.
    """
    if not text.strip():
        return []
    windows: list[Window] = []
    for raw in text.split(","):
        item = raw.strip()
        if "+" in item:
            start_text, _, duration_text = item.partition("+")
            start, duration = _number(item, start_text, "start"), _number(item, duration_text, "duration")
            windows.append((start, duration))
        elif item.count(":") == 2:
            up, down, until = (
                _number(item, part, name) for part, name in zip(item.split(":"), _FLAP_PARTS, strict=True)
            )
            try:
                windows.extend(flap_windows(up, down, until))
            except ValueError as exc:
                raise ValueError(f"outages entry {item!r}: {exc}") from None
        else:
            raise ValueError(
                f"outages entry {item!r} is neither 'start+duration' (e.g. '3+20', '3+inf') nor 'up:down:until' "
                "(e.g. '5:5:60')"
            )
    return check_outages(sorted(windows))


_FLAP_PARTS = ("up time", "down time", "end time")


def _number(item: str, text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"outages entry {item!r}: {name} {text.strip()!r} is not a number") from None


def check_outages(windows: Iterable[Window]) -> list[Window]:
    """Check windows: start finite and >= 0, duration > 0 (inf only for the last), in order, not overlapping."""
    out: list[Window] = []
    for start, duration in windows:
        label = format_outages([(start, duration)])
        if not (math.isfinite(start) and start >= 0):
            raise ValueError(f"outages window {label}: start must be a finite number >= 0")
        if not duration > 0:  # also rejects nan
            raise ValueError(f"outages window {label}: duration must be > 0 (or inf for an outage without end)")
        if out:
            previous_start, previous_duration = out[-1]
            if start < previous_start + previous_duration:
                previous = format_outages([out[-1]])
                raise ValueError(f"outages window {label} starts before {previous} ends; windows must not overlap")
        out.append((float(start), float(duration)))
    if len(out) > MAX_WINDOWS:
        raise ValueError(f"outages has {len(out)} windows; at most {MAX_WINDOWS}")
    return out


def format_outages(windows: Iterable[Window]) -> str:
    """The text form `parse_outages` reads back (`"3+20,40+inf"`); JSON has no infinity, so configs travel so."""
    return ",".join(f"{_short(start)}+{_short(duration)}" for start, duration in windows)


def _short(value: float) -> str:
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


class OutageTimer:
    """Whether the endpoint is down now, driven by one loop timer per window edge (no polling).

    `on_change` is called from a timer (or `end_current`) whenever `down` flips; the caller brings its sockets
    in line. Windows count from `restart(epoch)`, which the server calls at start and on every stats reset.
    """

    def __init__(self, windows: Iterable[Window], on_change: Callable[[], None]):
        self._windows = tuple(windows)
        self._on_change = on_change
        self._active: int | None = None
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def down(self) -> bool:
        """Whether a window is in force now (and was not ended early)."""
        return self._active is not None

    def restart(self, epoch: float) -> None:
        """Count windows from loop time `epoch`: the window covering now is in force, later edges get timers."""
        loop = asyncio.get_running_loop()
        self.close()
        elapsed = loop.time() - epoch
        was_down = self.down
        self._active = None
        for index, (start, duration) in enumerate(self._windows):
            end = start + duration
            if start <= elapsed < end:
                self._active = index
            if start > elapsed:
                self._timers.append(loop.call_at(epoch + start, self._begin, index))
            if elapsed < end < math.inf:
                self._timers.append(loop.call_at(epoch + end, self._end, index))
        if self.down != was_down:
            self._on_change()

    def end_current(self) -> bool:
        """End the window in force now, early (later windows still apply); False if none is in force."""
        if self._active is None:
            return False
        self._active = None
        self._on_change()
        return True

    def close(self) -> None:
        """Cancel every timer (the server is going away or the schedule restarts)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # The timers carry the window index rather than re-reading the clock: a timer may fire a hair early, and
    # adjacent windows (one ends as the next begins) then still hand over in either order.
    def _begin(self, index: int) -> None:
        was_down = self.down
        self._active = index
        if not was_down:
            self._on_change()

    def _end(self, index: int) -> None:
        if self._active == index:
            self._active = None
            self._on_change()
