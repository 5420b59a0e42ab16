"""The progress line tells the truth: rows count as they finish, dropped rows show, the ETA follows the row rate
without jumping, endpoints show in flight against their limit, the line fits the terminal, and a run ends on the
records written. Driven by a manual clock: no sleeps."""

from __future__ import annotations

import io
import itertools
import re

import pytest

from rowloom.concurrency.clock import ManualClock
from rowloom.config.pricing import BudgetConfig, Pricing
from rowloom.engine.progress import RunProgress
from rowloom.interface.output import CliConsole
from rowloom.interface.progress import ProgressDisplay, RateMeter, Rates, render_line
from rowloom.models.budget import Reservation, Spend, SpendBudget
from rowloom.models.types import Usage
from rowloom.observe.events.request import EndpointDown, LimitChanged, RequestAdmitted, RequestCompleted
from rowloom.observe.events.snapshots import CapacitySnapshot
from rowloom.observe.stats import RequestStats

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def started(total: int = 200) -> tuple[RunProgress, ManualClock]:
    clock = ManualClock(100.0)
    progress = RunProgress(clock=clock)
    progress.begin(records_total=total, row_groups_total=2, records_resumed=0)
    return progress, clock


def admitted(key: str, limit: int) -> RequestAdmitted:
    return RequestAdmitted(ts=0.0, key=key, alias="m", group="g", lease=1, wait_s=0.0, in_flight=1, limit=limit)


def completed(key: str) -> RequestCompleted:
    return RequestCompleted(ts=0.0, key=key, alias="m", group="g", lease=1, outcome="success", latency_s=0.1, tokens=10)


def test_rows_count_as_they_finish_before_any_row_group_is_written():
    progress, clock = started()
    for _ in range(5):
        progress.row_done()
    clock.advance(2.0)
    line = render_line(progress, None).plain
    assert progress.records_written == 0
    assert "5/200 rows" in line and "2.5 rows/s" in line


def test_dropped_rows_show_while_running_and_at_the_end():
    progress, clock = started(20)
    for _ in range(19):
        progress.row_done()
    progress.rows_dropped = 1
    clock.advance(4.0)
    assert "19/20 rows  1 dropped" in render_line(progress, None).plain
    progress.records_written = 19
    final = render_line(progress, None, final=True).plain
    assert "19/20 records written  1 row dropped" in final
    assert final.startswith("█" * 24)  # every row finished: a full bar, though one was dropped


def test_the_final_line_says_what_was_written_not_what_was_generated():
    progress, clock = started(200)
    for _ in range(150):
        progress.row_done()
    progress.records_written = 100  # interrupted: the second row group was never complete
    clock.advance(10.0)
    final = render_line(progress, None, final=True).plain
    assert "100/200 records written  0 rows dropped" in final and "in 10.0 s" in final


def test_a_resumed_run_ends_on_every_record_in_the_output_as_summary_json_counts_them():
    clock = ManualClock()
    progress = RunProgress(clock=clock)
    progress.begin(records_total=200, row_groups_total=2, records_resumed=100)
    progress.rows_done = progress.records_written = 100
    clock.advance(5.0)
    assert "100/200 rows" not in render_line(progress, None).plain
    assert "200/200 rows" in render_line(progress, None).plain
    assert "200/200 records written  0 rows dropped  100 resumed" in render_line(progress, None, final=True).plain


def test_eta_follows_the_row_rate_and_counts_down_steadily():
    progress, clock = started(1000)
    rates = Rates()
    etas = []
    for second in range(1, 61):
        clock.advance(1.0)
        # Rows land in waves: 20 every other second (10 rows/s on average).
        if second % 2 == 0:
            for _ in range(20):
                progress.row_done()
        line = render_line(progress, None, rates).plain
        if second == 1:
            assert "ETA --:--" in line  # no row yet: no rate to go by
            continue
        minutes, seconds = re.search(r"ETA (\d+):(\d+)", line).groups()
        etas.append(int(minutes) * 60 + int(seconds))
    assert all(later <= earlier for earlier, later in itertools.pairwise(etas))  # never climbs
    assert all(earlier - later <= 2 for earlier, later in itertools.pairwise(etas))  # never jumps
    assert abs(etas[-1] - (1000 - 600) / 10) <= 4  # 400 rows to go at 10 rows/s


def test_a_rate_meter_follows_a_change_of_pace_and_falls_in_a_stall():
    meter = RateMeter(start=0.0, tau_s=20.0)
    count = 0
    for t in range(1, 161):
        count += 10 if t <= 60 else 2
        meter.update(float(t), count)
    assert meter.rate(160.0) == pytest.approx(2.0, abs=0.1)  # 5 time constants after the change
    assert meter.rate(160.9) == meter.rate(160.0)  # the next change is not late yet
    assert meter.rate(180.0) < 1.0  # nothing for 20 s
    assert RateMeter(start=0.0).rate(5.0) is None  # nothing counted: no rate, no ETA


def test_each_endpoint_shows_in_flight_against_its_limit_and_requests_per_second():
    progress, clock = started()
    stats = RequestStats()
    stats.emit(CapacitySnapshot(ts=0.0, reason="job_started", endpoints={"sim/sim-small": {"limit": 4}}))
    assert "sim 0/4" in render_line(progress, stats).plain  # before any request
    for _ in range(16):
        stats.emit(admitted("sim/sim-small", 16))
    for _ in range(2):
        stats.emit(completed("sim/sim-small"))
    stats.emit(LimitChanged(ts=0.0, key="sim/sim-small", old=16, new=20, reason="increase"))
    clock.advance(1.0)
    line = render_line(progress, stats).plain
    assert "sim 14/20" in line and "2.0 req/s" in line


def test_tokens_per_second_show_while_running_and_the_tokens_at_the_end():
    progress, clock = started(20)
    stats = RequestStats()
    assert "tok/s" not in render_line(progress, stats).plain  # no usage reported yet: nothing to show
    for _ in range(30):
        stats.emit(admitted("sim/sim-small", 16))
        stats.emit(completed("sim/sim-small"))  # 10 tokens each
    clock.advance(2.0)
    assert "150 tok/s" in render_line(progress, stats).plain
    for _ in range(2000):
        stats.emit(completed("sim/sim-small"))
    progress.records_written = 20
    assert "20,300 tokens" in render_line(progress, stats, final=True).plain


def test_money_spent_shows_with_prices_and_against_a_budget():
    progress, _ = started(20)
    stats = RequestStats()
    stats.emit(admitted("sim/sim-small", 16))
    prices = {"m": Pricing(input_per_mtok=1e6, output_per_mtok=2e6)}
    progress.spend = SpendBudget(None, {"m": None})
    assert "USD" not in render_line(progress, stats).plain  # no prices: tokens only
    progress.spend = SpendBudget(None, prices, before=Spend(cost=0.5))
    progress.spend.settle(Reservation("m", None, lambda: (1, 0)), usage=Usage(prompt_tokens=1, completion_tokens=1))
    assert "3.50 USD" in render_line(progress, stats).plain  # with the earlier runs' spend
    progress.spend = SpendBudget(BudgetConfig(max_cost=12), prices, before=Spend(cost=3.5))
    assert "3.50 of 12.00 USD" in render_line(progress, stats, width=80).plain  # kept on a narrow line
    assert "3.50 of 12.00 USD" in render_line(progress, stats, final=True).plain
    progress.spend = SpendBudget(BudgetConfig(max_tokens=20_000), {"m": None}, before=Spend(tokens=9100))
    assert "9,100 of 20,000 tokens" in render_line(progress, stats).plain


def test_two_models_of_one_provider_are_told_apart():
    stats = RequestStats()
    stats.emit(admitted("sim/a", 8))
    stats.emit(admitted("sim/b", 4))
    assert stats.loads() == [("sim/a", 1, 8), ("sim/b", 1, 4)]


def test_an_endpoint_down_stays_on_a_narrow_line_and_less_important_parts_go_first():
    progress, clock = started()
    stats = RequestStats()
    stats.emit(admitted("sim/sim-small", 16))
    url = "http://127.0.0.1:9/v1"
    stats.emit(EndpointDown(ts=1.0, key="sim/sim-small", provider="sim", url=url, last_error="x", failures=3))
    progress.rows_dropped = 3
    clock.advance(3.0)
    wide = render_line(progress, stats, width=200).plain
    narrow = render_line(progress, stats, width=80).plain
    assert "sim 1/16" in wide and "sim 1/16" not in narrow
    assert len(narrow) <= 80
    for essential in ("0/200 rows", "3 dropped", "endpoint sim down", "probing", "ETA"):
        assert essential in narrow


def test_on_a_terminal_the_line_fits_its_width():
    for width in (80, 200):
        progress, clock = started()
        stats = RequestStats()
        for key in ("alpha/m", "beta/m", "gamma/m"):
            stats.emit(admitted(key, 64))
        file = io.StringIO()
        console = CliConsole(file=file, width=width, force_terminal=True, terminal=True)
        with ProgressDisplay(console, progress, refresh_s=60.0) as display:
            display.stats = stats
            for _ in range(7):
                progress.row_done()
            clock.advance(1.0)
            live = display.line().plain
            progress.records_written = 7
        assert len(live) <= width - 1 and "7/200 rows" in live
        lines = [ANSI.sub("", line).rstrip() for line in file.getvalue().replace("\r", "\n").split("\n")]
        assert all(len(line) <= width for line in lines)
        assert "7/200 records written  0 rows dropped" in [line for line in lines if line][-1]


def test_into_a_file_the_display_writes_whole_lines_and_ends_on_one():
    progress, clock = started()
    file = io.StringIO()
    console = CliConsole(file=file, width=80)  # a file: not a terminal
    with ProgressDisplay(console, progress):
        for _ in range(150):
            progress.row_done()
        progress.rows_dropped = 2
        progress.records_written = 148
        clock.advance(12.0)
    text = file.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text
    assert "148/200 records written  2 rows dropped" in text and len(text) > 80  # one line, however long


def test_batches_running_and_their_lines_show_until_they_finish():
    from rowloom.observe.events.batch import BatchFinished, BatchSubmitted

    progress, clock = started()
    stats = RequestStats()
    for n, lines in enumerate((100, 40)):
        stats.emit(
            BatchSubmitted(
                ts=0.0, key="batch:p/m", alias="b", batch_id=f"b{n}", lines=lines, resubmitted=0, size_bytes=1
            )
        )
    clock.advance(1.0)
    assert "2 batches running (140 lines)" in render_line(progress, stats).plain
    stats.emit(
        BatchFinished(
            ts=0.0,
            key="batch:p/m",
            alias="b",
            batch_id="b0",
            status="completed",
            lines=100,
            succeeded=100,
            failed=0,
            not_run=0,
            waited_s=1.0,
        )
    )
    assert "1 batch running (40 lines)" in render_line(progress, stats).plain
    assert stats.batch_summary()["b"]["batches_submitted"] == 2
