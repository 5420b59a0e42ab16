"""Reply-cache events counted where a run is read: summary.json's `cache` section (money saved at the config's
prices), the progress line, the HTML report and Prometheus."""

from __future__ import annotations

from prometheus_client import generate_latest

from rowloom.config.pricing import Pricing
from rowloom.engine.progress import RunProgress
from rowloom.interface.progress import render_line
from rowloom.observe.events.request import CacheHit, CacheMissed
from rowloom.observe.prometheus import PrometheusSink
from rowloom.observe.report import render_html
from rowloom.observe.stats import RequestStats

PRICES = {"writer": Pricing(input_per_mtok=1.0, output_per_mtok=2.0)}


def events():
    hit = {"key": "sim/m", "alias": "writer", "group": "question", "usage_known": True, "cached_tokens": 0}
    yield CacheHit(source="store", prompt_tokens=1000, completion_tokens=500, **hit)
    yield CacheHit(source="flight", prompt_tokens=1000, completion_tokens=500, **hit)
    yield CacheMissed(key="sim/m", alias="writer", group="review")


def test_hits_and_misses_reach_the_summary_progress_report_and_prometheus():
    stats, prometheus = RequestStats(), PrometheusSink(prices=PRICES)
    for event in events():
        stats.emit(event)
        prometheus.emit(event)
    summary = stats.cache(PRICES)
    assert summary == {
        "hits": 2,
        "misses": 1,
        "requests_saved": 2,
        "tokens_saved": 3000,
        "cost_saved": 0.004,  # 2 × (1000 × 1 + 500 × 2) / 1e6
        "currency": "USD",
    }
    assert stats.cache()["cost_saved"] is None  # no prices: unknown, not zero
    progress = RunProgress()
    progress.begin(records_total=10, row_groups_total=1, records_resumed=0)
    assert "cache hits 2" in render_line(progress, stats).plain
    assert "2 from the cache" in render_line(progress, stats, final=True).plain
    page = render_html({"status": "completed", "requests": {}, "cache": summary}, None)
    assert "2 hits (requests saved), 1 misses; 3,000 tokens saved, 0.0040 USD saved" in page
    metrics = generate_latest(prometheus.registry).decode()
    assert 'rowloom_cache_requests_total{column="question",endpoint="sim/m",model="writer",result="hit"} 2.0' in metrics
    assert 'rowloom_cache_requests_total{column="review",endpoint="sim/m",model="writer",result="miss"} 1.0' in metrics
    saved = 'rowloom_cache_saved_cost_total{column="question",currency="USD",endpoint="sim/m",model="writer"} 0.004'
    assert saved in metrics
