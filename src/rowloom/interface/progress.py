"""The live progress line of `rowloom run`: records done/total, rows/s, requests in flight, 429s, endpoints down,
ETA."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.text import Text

from rowloom.engine.progress import RunProgress
from rowloom.observe.stats import RequestStats


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def render_line(progress: RunProgress, stats: RequestStats | None) -> Text:
    """One status line."""
    done = progress.records_resumed + progress.rows_finished
    total = max(1, progress.records_total)
    width = 24
    filled = int(width * done / total)
    bar = "█" * filled + "░" * (width - filled)
    parts = [
        f"{bar} {done}/{progress.records_total} records",
        f"{progress.rows_per_s:6.1f} rows/s",
    ]
    if stats is not None:
        parts += [f"in flight {stats.in_flight}", f"429s {stats.rate_limited}"]
        parts += [f"endpoint {name} down {seconds:.0f} s — probing" for name, seconds in stats.down_now()]
    if progress.rows_dropped:
        parts.append(f"dropped {progress.rows_dropped}")
    parts.append(f"ETA {_fmt_eta(progress.eta_s)}")
    return Text("  ".join(parts))


class ProgressDisplay:
    """Refreshes the status line a few times a second while a run is going (display only, not scheduling).

    Rich's refresh thread redraws it, so it works around an event loop (`with`) and around a blocking driver
    such as the Ray executor's alike; it only reads counters.
    """

    def __init__(self, console: Console, progress: RunProgress, refresh_s: float = 0.25):
        self.console = console
        self.progress = progress
        self.stats: RequestStats | None = None
        self._live = Live(
            get_renderable=self._line,
            console=console,
            refresh_per_second=1 / refresh_s,
            transient=False,
        )

    def _line(self) -> Text:
        return render_line(self.progress, self.stats)

    def __enter__(self) -> ProgressDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._line(), refresh=True)
        self._live.__exit__(None, None, None)
        if not self.console.is_terminal:  # a file or pipe gets the last line without its line break
            self.console.print()
