"""The live progress line of `rowloom run`: records done/total, rows/s, requests in flight, 429s, ETA."""

from __future__ import annotations

import asyncio
import contextlib

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
    if progress.rows_dropped:
        parts.append(f"dropped {progress.rows_dropped}")
    parts.append(f"ETA {_fmt_eta(progress.eta_s)}")
    return Text("  ".join(parts))


class ProgressDisplay:
    """Refreshes the status line a few times a second while a run is going (display only, not scheduling)."""

    def __init__(self, console: Console, progress: RunProgress, refresh_s: float = 0.25):
        self.console = console
        self.progress = progress
        self.stats: RequestStats | None = None
        self.refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    async def __aenter__(self) -> ProgressDisplay:
        self._live = Live(render_line(self.progress, None), console=self.console, transient=False)
        self._live.__enter__()
        self._task = asyncio.get_running_loop().create_task(self._refresh())
        return self

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            if self._live is not None:
                self._live.update(render_line(self.progress, self.stats))

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.update(render_line(self.progress, self.stats))
            self._live.__exit__(None, None, None)
            if not self.console.is_terminal:  # a file or pipe gets the last line without its line break
                self.console.print()
