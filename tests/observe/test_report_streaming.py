"""The report streams its event log: memory bounded by endpoints and pools, not by events; any order reads right."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import orjson
import pytest

from rowloom.bench.synthetic_log import KEY, write_log
from rowloom.observe import event_log
from rowloom.observe.report import render_report
from rowloom.observe.series import MAX_STEPS, Series
from rowloom.observe.sinks import read_jsonl
from rowloom.observe.timeline_builder import build_timeline, timeline_of_log


def _report_peak_bytes(folder: Path) -> tuple[int, str]:
    """Peak Python allocation while the report of `folder` renders, and the page."""
    tracemalloc.start()
    try:
        page = render_report(folder).read_text()
        return tracemalloc.get_traced_memory()[1], page
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_a_large_log_renders_a_report_in_the_memory_a_small_one_takes(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    for folder, requests in ((small, 300), (large, 15_000)):
        write_log(folder / "events.jsonl", requests)
        (folder / "summary.json").write_text(json.dumps({"status": "completed", "records_written": requests}))
    render_report(small)  # imports plotly and its templates, which are no part of the log's cost
    small_peak, _ = _report_peak_bytes(small)
    large_peak, page = _report_peak_bytes(large)
    size = (large / "events.jsonl").stat().st_size
    # The large log is ~20 MB, ~90,000 events: held as a list it would take ~90 MB (about 1 kB an event). Streamed,
    # the report holds the timeline's bins and steps and a reorder window on top of what any page takes (~25 MB:
    # plotly.js is inlined).
    assert size > 19e6 and large_peak - small_peak < 8e6, (size, small_peak, large_peak)
    assert "success: 15000" in page and "no-events" not in page


def test_the_streamed_timeline_of_a_log_is_the_timeline_of_its_events_held_in_memory(tmp_path):
    log = tmp_path / "events.jsonl"
    write_log(log, 3_000)
    streamed, held = timeline_of_log(log), build_timeline(read_jsonl(log))
    assert streamed.idle_totals() == pytest.approx(held.idle_totals())
    assert streamed.endpoints[KEY].requests == held.endpoints[KEY].requests == 3_000
    assert streamed.utilisation(KEY) == pytest.approx(held.utilisation(KEY))


def test_a_series_past_its_step_bound_keeps_its_totals_and_time_weighted_bin_means():
    series, end = Series(recent_steps=3), MAX_STEPS * 4 * 0.01
    for i in range(MAX_STEPS * 4):
        series.set(i * 0.01, i % 2)
    series.close(end)
    assert not series.exact and series.t == [] and series.peak == 1 and series.last == 1
    assert [v for _, v in series.recent] == [0, 1, 0] or [v for _, v in series.recent] == [1, 0, 1]
    assert series.integral(0.0, end) == pytest.approx(end / 2)
    assert series.resample(0.0, end, 10)[1] == pytest.approx([0.5] * 10, abs=0.01)


def test_a_log_out_of_order_beyond_the_window_is_sorted_on_disk_and_reads_the_same(tmp_path, monkeypatch):
    # A Ray run's workers deliver their events in batches: shuffle blocks of the log to the same effect.
    ordered, shuffled = tmp_path / "ordered.jsonl", tmp_path / "shuffled.jsonl"
    write_log(ordered, 2_000)
    lines = ordered.read_bytes().splitlines(keepends=True)
    blocks = [lines[i : i + 500] for i in range(1, len(lines), 500)]
    random.Random(3).shuffle(blocks)
    shuffled.write_bytes(b"".join([lines[0], *(line for block in blocks for line in block)]))
    monkeypatch.setattr(event_log, "REORDER_WINDOW", 64)
    monkeypatch.setattr(event_log, "SORT_CHUNK", 1_000)  # several chunks to merge
    with pytest.raises(event_log.OutOfOrder):
        list(event_log.in_time_order(orjson.loads(line) for line in shuffled.read_bytes().splitlines()))
    expected = timeline_of_log(ordered)
    got = timeline_of_log(shuffled)
    assert got.idle_totals() == pytest.approx(expected.idle_totals())
    assert got.endpoints[KEY].requests == 2_000 and got.end == pytest.approx(expected.end)
