"""The progress line of `rowloom run`: rows finished of the total, rows dropped, rows/s and requests/s, each
endpoint's requests in flight against its limit, 429s, endpoints down, ETA; and the closing line, which says
exactly the records written and the rows dropped.

Display only: it reads the run's counters (`RunProgress`, `RequestStats`) and never touches scheduling.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.live import Live
from rich.text import Text

from rowloom.engine.progress import RunProgress
from rowloom.interface.output import on_terminal, plural, terminal_text
from rowloom.observe.stats import RequestStats

BAR_WIDTH = 24
MIN_BAR_WIDTH = 8
SEPARATOR = "  "
# Smoothing of the rates (and so of the ETA): a wave of rows finishing together moves them a little, a lasting
# change of pace fully within a few of these seconds.
RATE_TAU_S = 20.0


class RateMeter:
    """Per-second growth of a count since `start`, judged when the count changes.

    For its first `tau_s` seconds the plain average since `start` (there is no history to weigh yet); then an
    exponentially weighted average of the growth between changes, with time constant `tau_s`. Rows finish in
    waves (a row group's rows share their requests' round trips), so between two changes the rate holds; only
    once the next change is later than the last gap does it fall, as if that change were landing now, so a
    stall shows as a falling rate and a growing ETA.
    """

    def __init__(self, start: float, tau_s: float = RATE_TAU_S):
        self.start, self.tau_s = start, tau_s
        self.changed_at = start
        self._count, self._step, self._gap = 0, 0, 0.0
        self._rate: float | None = None

    def update(self, now: float, count: int) -> None:
        """The count is `count` at `now`."""
        if count != self._count and now > self.changed_at:
            self._rate = self._next(now, count)
            self._step, self._gap = count - self._count, now - self.changed_at
            self._count, self.changed_at = count, now

    def rate(self, now: float) -> float | None:
        """Per second at `now`; None while nothing was counted."""
        if self._rate is None or now - self.changed_at <= self._gap:
            return self._rate
        return min(self._rate, self._next(now, self._count + self._step))

    def _next(self, now: float, count: int) -> float:
        age = now - self.start
        if age < self.tau_s or self._rate is None:
            return count / age
        dt = now - self.changed_at
        return self._rate + (1 - math.exp(-dt / self.tau_s)) * ((count - self._count) / dt - self._rate)


@dataclass
class Rates:
    """The smoothed row, request and token rates of one run, and the ETA they give, advanced each time the line is
    drawn."""

    rows: RateMeter | None = None
    requests: RateMeter | None = None
    tokens: RateMeter | None = None  # prompt + completion tokens the provider reported

    def sample(self, progress: RunProgress, stats: RequestStats | None) -> tuple[float | None, float | None]:
        """(rows/s, requests/s) now; the meters restart when the run (re)begins."""
        start = progress.started_at or 0.0
        if self.rows is None or self.rows.start != start:
            self.rows, self.requests, self.tokens = RateMeter(start), RateMeter(start), RateMeter(start)
        assert self.requests is not None and self.tokens is not None
        now = progress.clock.now()
        self.rows.update(now, progress.rows_finished)
        if stats is not None:
            self.requests.update(now, stats.total)
            self.tokens.update(now, stats.tokens)
        return self.rows.rate(now), self.requests.rate(now) if stats is not None else None

    def tokens_per_s(self, progress: RunProgress) -> float | None:
        """Tokens/s as of the last `sample`."""
        return self.tokens.rate(progress.clock.now()) if self.tokens is not None else None

    def eta_s(self, progress: RunProgress) -> float | None:
        """Seconds to go: the rows to go at the row rate, counted down since the last row finished (so the ETA
        falls steadily between waves of rows instead of waiting for the next wave)."""
        now = progress.clock.now()
        rate = self.rows.rate(now) if self.rows is not None else None
        if not rate or self.rows is None:
            return None
        return max(0.0, progress.rows_to_go / rate - (now - self.rows.changed_at))


def _fmt_clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _fmt_rate(rate: float | None, unit: str) -> str:
    rate = rate or 0.0
    return f"{rate:.2f} {unit}/s" if rate < 1 else f"{rate:.1f} {unit}/s"  # a local model makes a row in seconds


def _fmt_count(count: float) -> str:
    """`812`, `9,400`, `52.3k`, `1.2M`: a token count or rate that fits a narrow line."""
    if count < 10_000:
        return f"{count:,.0f}"
    return f"{count / 1000:.1f}k" if count < 1_000_000 else f"{count / 1_000_000:.1f}M"


def _spent(progress: RunProgress) -> str | None:
    """The money (or budgeted tokens, requests) spent so far, with every earlier run into the output."""
    return progress.spend.brief() if progress.spend is not None else None


def _running_parts(progress: RunProgress, stats: RequestStats | None, rates: Rates) -> list[tuple[int, str]]:
    """(priority, text) of a run still going; the lower the priority, the longer a narrow line keeps it."""
    rows_rate, requests_rate = rates.sample(progress, stats)
    parts = [(0, f"{progress.records_resumed + progress.rows_done}/{progress.records_total} rows")]
    if progress.rows_dropped:
        parts.append((1, f"{progress.rows_dropped} dropped"))
    parts.append((3, _fmt_rate(rows_rate, "rows")))
    if stats is not None:
        parts.append((4, _fmt_rate(requests_rate, "req")))
        if stats.tokens:  # the first to go on a narrow line: in flight vs limit says more of a run's health
            parts.append((7, f"{_fmt_count(rates.tokens_per_s(progress) or 0.0)} tok/s"))
        if (spent := _spent(progress)) is not None:
            parts.append((2, spent))
        parts += [(5, f"{name} {in_flight}/{limit}") for name, in_flight, limit in stats.loads()]
        if stats.rate_limited:
            parts.append((6, f"429s {stats.rate_limited}"))
        if stats.cache_hits:
            parts.append((6, f"cache hits {stats.cache_hits}"))
        if stats.batches_running:  # rows that wait minutes for a batch: say so, or the line looks stalled
            running = stats.batches_running
            batches = f"{running} {'batch' if running == 1 else 'batches'}"
            parts.append((1, f"{batches} running ({stats.batch_lines_running} lines)"))
        parts += [(1, f"endpoint {name} down {seconds:.0f} s — probing") for name, seconds in stats.down_now()]
    parts.append((2, f"ETA {_fmt_clock(rates.eta_s(progress))}"))
    return parts


def _final_parts(progress: RunProgress, stats: RequestStats | None) -> list[tuple[int, str]]:
    """What the run ended with: records written (resumed ones included, as in summary.json), rows dropped."""
    elapsed = max(progress.elapsed_s, 1e-9)
    written = progress.records_resumed + progress.records_written
    parts = [
        (0, f"{written}/{progress.records_total} records written"),
        (0, f"{plural(progress.rows_dropped, 'row')} dropped"),
    ]
    if progress.records_resumed:
        parts.append((2, f"{progress.records_resumed} resumed"))
    parts.append((3, _fmt_rate(progress.rows_finished / elapsed, "rows")))
    if stats is not None:
        parts.append((4, _fmt_rate(stats.total / elapsed, "req")))
        if stats.tokens:
            parts.append((5, f"{stats.tokens:,} tokens"))  # exact: the figure summary.json's ledger holds
        if (spent := _spent(progress)) is not None:
            parts.append((2, spent))
        if stats.rate_limited:
            parts.append((6, f"429s {stats.rate_limited}"))
        if stats.cache_hits:
            parts.append((6, f"{stats.cache_hits} from the cache"))
    parts.append((1, f"in {elapsed:.1f} s" if elapsed < 60 else f"in {_fmt_clock(elapsed)}"))
    return parts


def _fit(parts: list[tuple[int, str]], fraction: float, width: int | None) -> str:
    """The bar and the parts in one line of at most `width` cells. The bar keeps one width for the whole run (an
    eighth of the line, so it does not jitter as numbers grow); the least important parts go first; when even
    the essential ones do not fit beside the bar, the bar goes (and the line may be cut)."""

    def joined(kept: list[tuple[int, str]]) -> str:
        return SEPARATOR.join(text for _, text in kept)

    bar_width = BAR_WIDTH if width is None else min(BAR_WIDTH, width // 8)
    kept = list(parts)
    if width is not None:
        budget = width - bar_width - 1
        while cell_len(joined(kept)) > budget and any(p > 1 for p, _ in kept):
            worst = max(p for p, _ in kept)
            del kept[max(i for i, (p, _) in enumerate(kept) if p == worst)]
        if cell_len(joined(kept)) > budget or bar_width < MIN_BAR_WIDTH:
            return joined(kept)
    filled = min(bar_width, int(bar_width * fraction))
    return "█" * filled + "░" * (bar_width - filled) + " " + joined(kept)


def render_line(
    progress: RunProgress,
    stats: RequestStats | None,
    rates: Rates | None = None,
    *,
    width: int | None = None,
    final: bool = False,
) -> Text:
    """One status line, at most `width` cells when given; `final` for the line a run ends on."""
    total = max(1, progress.records_total)
    if final:
        finished = progress.records_resumed + progress.records_written + progress.rows_dropped
        parts = _final_parts(progress, stats)
    else:
        finished = progress.records_resumed + progress.rows_finished
        parts = _running_parts(progress, stats, rates or Rates())
    return terminal_text(_fit(parts, finished / total, width), newlines=False)  # drop reasons name columns


class ProgressDisplay:
    """Shows the progress of a run while it goes (display only, not scheduling), and the line it ended on.

    On a terminal one line is redrawn a few times a second, cut to the terminal's width so that it stays one
    line; into a file or pipe (a log) a whole line is written every `log_every_s` instead. Either way a thread
    does it (rich's refresh thread or a logger), so it works around an event loop (`with`) and around a
    blocking driver such as the Ray executor's alike; it only reads counters.
    """

    def __init__(self, console: Console, progress: RunProgress, refresh_s: float = 0.25, log_every_s: float = 30.0):
        self.console = console
        self.progress = progress
        self.stats: RequestStats | None = None
        self.refresh_s, self.log_every_s = refresh_s, log_every_s
        self._rates = Rates()
        self._final = False
        self._live: Live | None = None
        self._logger: threading.Thread | None = None
        self._stop = threading.Event()

    def line(self, *, final: bool = False) -> Text:
        """The line as it would be drawn now."""
        # On a terminal a line wider than the screen wraps and every redraw then adds a line: keep it narrower.
        width = self.console.width - 1 if self._live is not None else None
        return render_line(self.progress, self.stats, self._rates, width=width, final=final)

    def __enter__(self) -> ProgressDisplay:
        if on_terminal(self.console) and self.console.is_terminal and not self.console.is_dumb_terminal:
            self._live = Live(
                get_renderable=lambda: self.line(final=self._final),
                console=self.console,
                refresh_per_second=1 / self.refresh_s,
                transient=False,
            )
            self._live.__enter__()
        else:
            self._logger = threading.Thread(target=self._log, name="rowloom-progress", daemon=True)
            self._logger.start()
        return self

    def _log(self) -> None:
        while not self._stop.wait(self.log_every_s):
            self.console.print(self.line(), soft_wrap=True, highlight=False)

    def __exit__(self, *exc: object) -> None:
        self._final = True
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)
            return
        self._stop.set()
        if self._logger is not None:
            self._logger.join()
        self.console.print(self.line(final=True), soft_wrap=True, highlight=False)
