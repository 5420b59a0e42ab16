"""Simulator building blocks: config validation, schedule parsing, token buckets, processor sharing and outage
timers (the last two on a virtual-time loop, so their timings are exact)."""

from __future__ import annotations

import asyncio
import math
import re
import selectors
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from rowloom.bench.sim_limits import RateLimits, TokenBucket, format_duration
from rowloom.bench.sim_outages import OutageTimer
from rowloom.bench.sim_service import Fault, ServiceDraws
from rowloom.bench.sim_sharing import ProcessorSharing
from rowloom.bench.simulator import SimulatorConfig, flap_windows, parse_capacity_schedule, parse_outages

T = TypeVar("T")


def test_capacity_schedule_parses_steps():
    assert parse_capacity_schedule("0:64, 10:16,12.5:0") == [(0.0, 64), (10.0, 16), (12.5, 0)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("0-64", "no ':'"),
        ("zero:64", "not a number"),
        ("0:many", "not an integer"),
        ("5:1,2:3", "strictly increase"),
        ("0:-1", ">= 0"),
        ("-1:4", ">= 0"),
    ],
)
def test_bad_capacity_schedule_is_rejected_with_a_clear_message(text: str, fragment: str):
    with pytest.raises(ValueError, match=fragment):
        parse_capacity_schedule(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capacity", 0),
        ("latency_s", -1.0),
        ("error_rate", 1.5),
        ("mode", "cloud"),
        ("rpm", 0),
        ("jitter", -0.1),
        ("outages", "3+x"),
        ("outages", ((5.0, 1.0), (5.5, 1.0))),
        ("overload_status", 500),
        ("error_status", 503),
        ("reply_words_min", 0),
        ("max_queued", -1),
    ],
)
def test_bad_config_values_name_the_field(field: str, value: object):
    with pytest.raises(ValidationError) as info:
        SimulatorConfig(**{field: value})
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"reply_words_min": 50, "reply_words_max": 10}, "reply_words_min (50) exceeds reply_words_max (10)"),
        ({"max_queued": 4}, "max_queued applies to mode='vllm' only"),
    ],
)
def test_inconsistent_settings_name_both_fields_and_the_fix(settings: dict[str, object], fragment: str):
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        SimulatorConfig(**settings)


def test_new_settings_accept_the_text_a_with_sim_spec_gives():
    config = SimulatorConfig(
        mode="vllm",
        max_queued="4",
        outages="3+20,40+5",
        overload_status="529",
        error_status="502",
        reply_words_min="20",
        reply_words_max="600",
    )
    assert (config.max_queued, config.overload_status, config.error_status) == (4, 529, 502)
    assert config.outages == ((3.0, 20.0), (40.0, 5.0))
    assert (config.reply_words_min, config.reply_words_max) == (20, 600)


def test_outages_survive_the_json_trip_to_a_simulator_process_even_without_end():
    config = SimulatorConfig(outages="40+5,50+inf")
    assert config.model_dump_json().count('"outages":"40+5,50+inf"') == 1
    assert SimulatorConfig.model_validate_json(config.model_dump_json()) == config
    assert SimulatorConfig.model_validate_json(SimulatorConfig().model_dump_json()).outages == ()


def test_outages_parse_windows_without_end_and_flapping():
    assert parse_outages(" 40+5, 3+20") == [(3.0, 20.0), (40.0, 5.0)]
    assert parse_outages("3+inf") == [(3.0, math.inf)]
    assert parse_outages("5:5:30") == [(5.0, 5.0), (15.0, 5.0), (25.0, 5.0)]
    assert parse_outages("1+1,5:5:20") == [(1.0, 1.0), (5.0, 5.0), (15.0, 5.0)]
    assert parse_outages("") == []
    assert flap_windows(2, 3, 9) == [(2, 3), (7, 2)]  # the last window ends with the flapping, at t=9


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3-20", "entry '3-20' is neither"),
        ("x+2", "entry 'x+2': start 'x' is not a number"),
        ("3+soon", "entry '3+soon': duration 'soon' is not a number"),
        ("3+0", "window 3+0: duration must be > 0"),
        ("-1+2", "window -1+2: start must be a finite number >= 0"),
        ("3+inf,5+1", "window 5+1 starts before 3+inf ends"),
        ("0:5:10", "entry '0:5:10': flap up and down times must be finite numbers > 0"),
        ("1:1:x", "entry '1:1:x': end time 'x' is not a number"),
        ("0.001:0.001:100", "more than 10000 windows"),
    ],
)
def test_bad_outages_are_rejected_naming_the_entry(text: str, fragment: str):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_outages(text)


def test_fault_rates_must_fit_in_one_draw():
    with pytest.raises(ValidationError, match="exceeds 1"):
        SimulatorConfig(error_rate=0.7, timeout_rate=0.4)


def test_config_accepts_schedule_string_and_reports_capacity_over_time():
    config = SimulatorConfig(capacity=8, capacity_schedule="2:4,5:16")
    assert [config.capacity_at(t) for t in (0, 1.99, 2, 4.9, 5, 100)] == [8, 8, 4, 4, 16, 16]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.02, "20ms"), (0.0, "0ms"), (1.5, "1.5s"), (12.0, "12s"), (360.0, "6m0s")]
)
def test_reset_durations_use_openai_style(seconds: float, text: str):
    assert format_duration(seconds) == text


def test_token_bucket_refills_continuously_at_limit_per_minute():
    bucket = TokenBucket(60, now=0.0)  # one unit per second, burst 60
    assert bucket.wait_for(60, 0.0) == 0
    bucket.take(60, 0.0)
    assert bucket.remaining(0.0) == 0
    assert bucket.wait_for(1, 0.0) == pytest.approx(1.0)
    assert bucket.remaining(2.5) == 2
    assert bucket.reset_s(2.5) == pytest.approx(57.5)
    assert bucket.remaining(1000.0) == 60  # never above the burst


def test_rate_limits_charge_both_buckets_or_neither():
    limits = RateLimits(rpm=10, tpm=100, now=0.0)
    assert limits.admit(90, 0.0).allowed
    refused = limits.admit(20, 0.0)  # requests fine, tokens short by 10 -> 10 / (100/60) s
    assert not refused.allowed
    assert refused.limited_by == "tokens"
    assert refused.wait_s == pytest.approx(6.0)
    headers = limits.headers(0.0)
    assert headers["x-ratelimit-remaining-requests"] == "9"  # the refused request was not charged
    assert headers["x-ratelimit-remaining-tokens"] == "10"


def test_rate_limits_send_no_headers_when_unset():
    limits = RateLimits(None, None, 0.0)
    decision = limits.admit(10**9, 0.0)
    assert decision.allowed
    assert decision.headers == {}
    assert not limits.enabled


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it: processor sharing is timed
    by the loop's clock, so its service times come out exact, however loaded the machine is."""

    def __init__(self) -> None:
        self.virtual_now = 0.0
        super().__init__(_SkippingSelector(self))

    def time(self) -> float:
        return self.virtual_now


class _SkippingSelector(selectors.DefaultSelector):
    """Returns what is ready at once; with nothing ready, moves the loop's clock by the timeout, not waiting."""

    def __init__(self, loop: _VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer pending: only I/O can wake the loop
            return super().select(None)
        self._loop.virtual_now += timeout
        return []


def in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    loop = _VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


async def _finish_time(pool: ProcessorSharing, work: float) -> float:
    await pool.serve(work)
    return asyncio.get_running_loop().time()


def test_processor_sharing_divides_capacity_among_jobs():
    async def main() -> tuple[float, float, int]:
        pool = ProcessorSharing(lambda: 1)
        short, long = await asyncio.gather(_finish_time(pool, 0.05), _finish_time(pool, 0.10))
        return short, long, pool.active

    short, long, active = in_virtual_time(main())
    # Capacity 1, two jobs: both at half speed until the short one ends at 0.1 s, then full speed.
    assert short == pytest.approx(0.10)
    assert long == pytest.approx(0.15)
    assert active == 0


def test_processor_sharing_runs_at_full_speed_below_capacity():
    async def main() -> list[float]:
        pool = ProcessorSharing(lambda: 4)
        return await asyncio.gather(*(_finish_time(pool, 0.05) for _ in range(4)))

    assert in_virtual_time(main()) == pytest.approx([0.05] * 4)


def test_a_capacity_step_re_times_jobs_already_in_service():
    async def main() -> list[float]:
        capacity = [1]
        pool = ProcessorSharing(lambda: capacity[0])

        def step() -> None:
            capacity[0] = 4
            pool.capacity_changed()

        asyncio.get_running_loop().call_at(0.15, step)
        return await asyncio.gather(*(_finish_time(pool, 0.1) for _ in range(4)))

    # Each job gets 0.15 / 4 = 0.0375 s of work by the step, then the remaining 0.0625 s at full speed.
    assert in_virtual_time(main()) == pytest.approx([0.2125] * 4)


def test_cancelled_job_leaves_the_pool_and_frees_its_share():
    async def main() -> tuple[float, int]:
        pool = ProcessorSharing(lambda: 1)
        doomed = asyncio.create_task(pool.serve(10.0))
        survivor = asyncio.create_task(_finish_time(pool, 0.1))
        await asyncio.sleep(0.05)  # survivor got 0.025 s of work at half speed
        doomed.cancel()
        return await survivor, pool.active

    finished, active = in_virtual_time(main())
    assert finished == pytest.approx(0.125)  # the remaining 0.075 s at full speed
    assert active == 0


async def _outage_changes(windows: str, *, reset_at: float | None = None, until: float = 2.0) -> list:
    """(loop time, down) at every flip of an outage timer over `until` seconds; restarted at `reset_at`."""
    loop = asyncio.get_running_loop()
    changes: list[tuple[float, bool]] = []
    timer = OutageTimer(parse_outages(windows), lambda: changes.append((loop.time(), timer.down)))
    timer.restart(loop.time())
    if reset_at is not None:
        await asyncio.sleep(reset_at)
        timer.restart(loop.time())
    await asyncio.sleep(until - loop.time())
    timer.close()
    return changes


def test_outage_timer_flips_at_every_edge_of_a_flapping_schedule_and_stays_up_after_it():
    changes = in_virtual_time(_outage_changes("0.3:0.3:1.5"))
    assert [down for _, down in changes] == [True, False, True, False]
    assert [at for at, _ in changes] == pytest.approx([0.3, 0.6, 0.9, 1.2])


def test_outage_timer_counts_windows_again_from_a_restart():
    changes = in_virtual_time(_outage_changes("0.2+0.2", reset_at=0.5))
    assert [down for _, down in changes] == [True, False, True, False]
    assert [at for at, _ in changes] == pytest.approx([0.2, 0.4, 0.7, 0.9])


def test_an_outage_without_end_is_down_from_the_start_until_ended_early():
    async def main() -> tuple[list[bool], bool, bool]:
        flips: list[bool] = []
        timer = OutageTimer(parse_outages("0+inf"), lambda: flips.append(timer.down))
        timer.restart(asyncio.get_running_loop().time())
        ended = timer.end_current()
        return flips, ended, timer.end_current()

    assert in_virtual_time(main()) == ([True, False], True, False)


def test_uniform_jitter_stays_within_its_band_and_repeats_with_the_seed():
    config = SimulatorConfig(latency_s=0.1, jitter=0.2, seed=7)
    first = ServiceDraws(config).service_s(0)
    draws = ServiceDraws(config)
    samples = [draws.service_s(0) for _ in range(500)]
    assert all(0.08 <= s <= 0.12 for s in samples)
    assert samples[0] == first
    assert len(set(samples)) > 400


def test_lognormal_jitter_keeps_the_configured_mean():
    draws = ServiceDraws(SimulatorConfig(latency_s=0.1, jitter=0.5, jitter_kind="lognormal", seed=3))
    samples = [draws.service_s(0) for _ in range(20_000)]
    assert sum(samples) / len(samples) == pytest.approx(0.1, rel=0.05)
    assert max(samples) > 0.2  # a real tail, not a band


def test_per_token_latency_adds_to_the_base():
    draws = ServiceDraws(SimulatorConfig(latency_s=0.1, latency_per_token_s=0.01))
    assert draws.service_s(20) == pytest.approx(0.3)


def test_fault_draws_follow_their_rates():
    draws = ServiceDraws(SimulatorConfig(error_rate=0.2, truncated_rate=0.1, seed=11))
    counts = Counter(draws.fault() for _ in range(20_000))
    assert counts[Fault.ERROR] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts[Fault.TRUNCATED] / 20_000 == pytest.approx(0.1, abs=0.015)
    assert set(counts) == {None, Fault.ERROR, Fault.TRUNCATED}
