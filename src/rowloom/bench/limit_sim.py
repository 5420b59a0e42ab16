"""Server models in virtual time, driving one `Limit` with unlimited demand: how an algorithm behaves, fast.

Owns the discrete-event loop, three kinds of server (hosted with 429 beyond capacity, processor sharing like
vLLM, FIFO slots with batched decoding like llama.cpp) and the figures of one run. It sends no traffic and
needs no event loop: thousands of requests take milliseconds, so tests can check an algorithm under seeded
noise across many conditions, and `rowloom bench limits` can show where each algorithm settles. The socket-level
benchmarks (`rowloom bench`) remain the judge of the whole stack.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Literal

from rowloom.models.admission.limits.base import Limit
from rowloom.models.admission.overload_runs import OverloadRuns
from rowloom.models.types import Outcome

ServerKind = Literal["hosted", "sharing", "slots"]

_REJECT_RTT_S = 0.005  # a 429 or 503 comes back at once


@dataclass(frozen=True)
class ServerModel:
    """How a simulated endpoint serves requests.

    * `hosted`: serves `capacity` at once, each at full speed; answers 429 to the rest at once.
    * `sharing`: every request in service progresses at `min(1, capacity / n)` (vLLM's batching); past
      `capacity + max_queued` in the system it answers 503 at once (when `max_queued` is set).
    * `slots`: `capacity` slots served first come, first served; the rest queue. A slot progresses at
      `1 / (1 + batch_cost * (busy - 1))`: 0 is perfect batching, 1 is a server whose compute is shared.

    Service work of one request: `latency_s * noise + per_token_s * tokens`, where noise is lognormal with
    mean 1 and `sigma` (load-independent spread, as real replies have). `reject_rate` answers that share of
    requests 503/529 at once whatever the load (a provider's own overload, a restarting backend).
    """

    kind: ServerKind = "hosted"
    capacity: int = 16
    latency_s: float = 0.2
    sigma: float = 0.0
    per_token_s: float = 0.0
    batch_cost: float = 0.0
    max_queued: int | None = None
    reject_rate: float = 0.0

    def work_s(self, rng: random.Random, tokens: int) -> float:
        noise = math.exp(rng.gauss(-self.sigma * self.sigma / 2.0, self.sigma)) if self.sigma > 0 else 1.0
        return self.latency_s * noise + self.per_token_s * tokens


@dataclass(frozen=True)
class RequestMix:
    """The requests a workload sends, in turn: each column's `max_tokens`; reply lengths are drawn from
    `[min_tokens, max_tokens_drawn]` and capped by the column's `max_tokens`."""

    max_tokens: tuple[int, ...] = (64,)
    min_tokens: int = 30
    max_tokens_drawn: int = 60

    def tokens(self, rng: random.Random, seq: int) -> int:
        cap = self.max_tokens[seq % len(self.max_tokens)]
        return min(cap, rng.randint(self.min_tokens, self.max_tokens_drawn))


@dataclass
class _Job:
    work: float
    start: float
    epoch: int
    at_start: int
    tokens: int
    seq: int
    mark: float  # the in-flight integral when it was admitted
    done: float = 0.0


@dataclass
class LimitRun:
    """Figures of one simulated run (the second half of it, once the limit had time to settle)."""

    server: ServerModel
    completed: int = 0
    rejected: int = 0
    tokens: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    no_load_latencies: list[float] = field(default_factory=list)
    limit_time: float = 0.0  # integral of the limit over the measured half
    in_flight_time: float = 0.0
    limits: list[tuple[float, int]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Completed work per second, in seconds of no-load service (independent of which requests finished
        inside the measured half, unlike a request count when lengths differ)."""
        return sum(self.no_load_latencies) / self.seconds if self.seconds else 0.0

    @property
    def token_rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def mean_limit(self) -> float:
        return self.limit_time / self.seconds if self.seconds else 0.0

    @property
    def mean_in_flight(self) -> float:
        return self.in_flight_time / self.seconds if self.seconds else 0.0

    @property
    def median_latency(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0

    @property
    def latency_over_no_load(self) -> float:
        """Median latency ÷ the median service time the same requests would have had alone."""
        base = statistics.median(self.no_load_latencies) if self.no_load_latencies else 0.0
        return self.median_latency / base if base else 0.0

    @property
    def share_rejected(self) -> float:
        total = self.completed + self.rejected
        return self.rejected / total if total else 0.0


def simulate(
    limit: Limit,
    server: ServerModel,
    *,
    seconds: float,
    mix: RequestMix | None = None,
    seed: int = 0,
    clock: object | None = None,
    measured_from: float | None = None,
) -> LimitRun:
    """Run `limit` against `server` for `seconds` of virtual time with unlimited demand.

    The client keeps `limit.limit` requests in flight; each finished request is one sample. `clock`, when
    given, is a `ManualClock` advanced with virtual time (for limits that read a clock). Figures cover the run
    from `measured_from` (default: its second half, the steady state; 0 includes the start-up).
    """
    mix = mix or RequestMix()
    rng = random.Random(seed)
    run = LimitRun(server)
    now, seq = 0.0, 0
    load_integral = 0.0  # integral of requests in flight over time: a request's load is its growth / its rtt
    active: list[_Job] = []  # admitted, in arrival order; the first `capacity` hold slots (slots kind)
    rejects: list[tuple[float, _Job, Outcome]] = []
    runs = OverloadRuns()  # as request admission does: background overloads never reach the limit
    measured_from = seconds / 2 if measured_from is None else measured_from

    def in_flight() -> int:
        return len(active) + len(rejects)

    def rates() -> list[float]:
        n = len(active)
        if server.kind == "hosted":
            return [1.0] * n
        if server.kind == "sharing":
            return [min(1.0, server.capacity / n)] * n if n else []
        busy = min(n, server.capacity)
        speed = 1.0 / (1.0 + server.batch_cost * (busy - 1)) if busy else 0.0
        return [speed if i < busy else 0.0 for i in range(n)]

    def admit() -> None:
        nonlocal seq
        while in_flight() < limit.limit:
            tokens = mix.tokens(rng, seq)
            job = _Job(server.work_s(rng, tokens), now, limit.epoch, in_flight() + 1, tokens, seq, load_integral)
            seq += 1
            if server.kind == "hosted":
                refuse = len(active) >= server.capacity
            elif server.kind == "sharing" and server.max_queued is not None:
                refuse = len(active) >= server.capacity + server.max_queued
            else:
                refuse = False
            # A full hosted server answers 429, a full vLLM queue 503; a background rejection is a 529. Drawn only
            # when set, so every other condition's figures stay as they were.
            cause = Outcome.RATE_LIMITED if server.kind == "hosted" else Outcome.OVERLOADED
            if not refuse and server.reject_rate and rng.random() < server.reject_rate:
                refuse, cause = True, Outcome.OVERLOADED
            if refuse:
                rejects.append((now + _REJECT_RTT_S, job, cause))
            else:
                active.append(job)

    admit()
    while now < seconds:
        speed = rates()
        finish_at, index = math.inf, -1
        for i, (job, rate) in enumerate(zip(active, speed, strict=True)):
            if rate > 0:
                at = now + (job.work - job.done) / rate
                if at < finish_at:
                    finish_at, index = at, i
        reject_at = min((at for at, _, _ in rejects), default=math.inf)
        nxt = min(finish_at, reject_at, seconds)
        if nxt > measured_from:
            span = nxt - max(now, measured_from)
            run.limit_time += limit.limit * span
            run.in_flight_time += in_flight() * span
        for job, rate in zip(active, speed, strict=True):
            job.done += (nxt - now) * rate
        load_integral += in_flight() * (nxt - now)
        now = nxt
        if clock is not None:
            clock.advance(max(0.0, now - clock.now()))  # type: ignore[attr-defined]
        if now >= seconds:
            break
        count = in_flight()
        if reject_at <= finish_at:
            position = min(range(len(rejects)), key=lambda i: rejects[i][0])
            _, job, cause = rejects.pop(position)
            if cause is Outcome.RATE_LIMITED or runs.counts(cause):  # as `feedback` judges them
                _feed(limit, job, now, count, load_integral, cause)
            if now >= measured_from:
                run.rejected += 1
        else:
            job = active.pop(index)
            runs.on_success()
            _feed(limit, job, now, count, load_integral)
            if now >= measured_from:
                run.completed += 1
                run.tokens += job.tokens
                run.latencies.append(now - job.start)
                run.no_load_latencies.append(job.work)
        if not run.limits or run.limits[-1][1] != limit.limit:
            run.limits.append((now, limit.limit))
        admit()
    run.seconds = seconds - measured_from
    return run


def _feed(limit: Limit, job: _Job, now: float, in_flight: int, load_integral: float, cause: Outcome | None = None):
    """One finished job as a sample: dropped when it has a `cause`; its load is the in-flight integral's growth
    over its round trip."""
    limit.on_sample(
        job.start,
        now - job.start,
        in_flight,
        cause is not None,
        epoch=job.epoch,
        in_flight_at_start=job.at_start,
        cause=cause,
        tokens=None if cause is not None else job.tokens,
        load=(load_integral - job.mark) / (now - job.start),
    )


def peak_throughput(server: ServerModel, mix: RequestMix | None = None, seed: int = 0, seconds: float = 120.0) -> float:
    """Work per second the server completes when never starved: a fixed limit of its capacity (and of twice
    it, where queueing or batching could pay), measured the same way as `simulate`."""
    from rowloom.models.admission.limits.fixed import FixedLimit

    levels = [server.capacity] if server.kind == "hosted" else [server.capacity, 2 * server.capacity]
    return max(simulate(FixedLimit(level), server, seconds=seconds, mix=mix, seed=seed).throughput for level in levels)


# Servers the default limit is judged against by `rowloom bench limits`: (name, server, request mix, ceiling,
# seconds). Latency 200 ms unless said; "spread" is lognormal sigma; "lengths" are 32/128/512-token replies with
# latency proportional to length; "slots" servers batch `capacity` requests (batch_cost: 0 is free batching,
# 1 is none) and queue the rest.
_LENGTHS = RequestMix((32, 128, 512), 20, 600)
_CHAT = RequestMix((40, 64, 160), 10, 160)
_START_UP_S = 10.0  # the table's start-up column: a run's first seconds, from the default first limit
CONDITIONS: tuple[tuple[str, ServerModel, RequestMix | None, int, float], ...] = (
    ("hosted 16, spread 0.5, ceiling 64", ServerModel("hosted", 16, 0.2, 0.5), None, 64, 60),
    ("hosted 8, spread 0.5, ceiling 64", ServerModel("hosted", 8, 0.2, 0.5), None, 64, 60),
    ("hosted 4, spread 0.5, ceiling 64", ServerModel("hosted", 4, 0.2, 0.5), None, 64, 60),
    ("hosted 16, spread 1.0, ceiling 64", ServerModel("hosted", 16, 0.2, 1.0), None, 64, 60),
    ("hosted 16, lengths, ceiling 64", ServerModel("hosted", 16, 0.02, per_token_s=0.002), _LENGTHS, 64, 60),
    (
        "hosted 16, spread 0.5, 1% answered 529 at any load, ceiling 64",
        ServerModel("hosted", 16, 0.2, 0.5, reject_rate=0.01),
        None,
        64,
        60,
    ),
    (
        "hosted 16, spread 0.5, 5% answered 529 at any load, ceiling 64",
        ServerModel("hosted", 16, 0.2, 0.5, reject_rate=0.05),
        None,
        64,
        60,
    ),
    (
        "hosted 16, spread 0.5, 15% answered 529 at any load, ceiling 64",
        ServerModel("hosted", 16, 0.2, 0.5, reject_rate=0.15),
        None,
        64,
        60,
    ),
    ("vLLM-style 16, no spread, ceiling 128", ServerModel("sharing", 16, 0.2), None, 128, 60),
    ("vLLM-style 16, spread 0.5, ceiling 128", ServerModel("sharing", 16, 0.2, 0.5), None, 128, 60),
    ("vLLM-style 8, spread 0.5, ceiling 128", ServerModel("sharing", 8, 0.2, 0.5), None, 128, 60),
    ("vLLM-style 16, spread 1.0, ceiling 128", ServerModel("sharing", 16, 0.2, 1.0), None, 128, 60),
    ("vLLM-style 16, lengths, ceiling 128", ServerModel("sharing", 16, 0.02, per_token_s=0.002), _LENGTHS, 128, 60),
    (
        "vLLM-style 16, queue 8 (503 beyond), spread 0.5, ceiling 128",
        ServerModel("sharing", 16, 0.2, 0.5, max_queued=8),
        None,
        128,
        60,
    ),
    (
        "vLLM-style 16, queue 8 (503 beyond), spread 0.5, 5% answered 503 at any load, ceiling 128",
        ServerModel("sharing", 16, 0.2, 0.5, max_queued=8, reject_rate=0.05),
        None,
        128,
        60,
    ),
    (
        "vLLM-style 16, spread 0.5, 5% answered 503 at any load, ceiling 128",
        ServerModel("sharing", 16, 0.2, 0.5, reject_rate=0.05),
        None,
        128,
        60,
    ),
    (
        "GPU slots 32, batching 5%/request, ceiling 128",
        ServerModel("slots", 32, 0.05, 0.3, per_token_s=0.005, batch_cost=0.05),
        RequestMix((128, 256), 30, 300),
        128,
        120,
    ),
    (
        "CPU slots 4, batching 30%/request, ceiling 16",
        ServerModel("slots", 4, 0.1, 0.2, per_token_s=0.015, batch_cost=0.3),
        _CHAT,
        16,
        300,
    ),
    (
        "CPU slots 4, no batching gain, ceiling 16",
        ServerModel("slots", 4, 0.1, 0.2, per_token_s=0.015, batch_cost=1.0),
        _CHAT,
        16,
        300,
    ),
)


def table(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, object]]:
    """The default limit against every condition in `CONDITIONS`: throughput against the server's peak in the
    steady state (the run's second half) and in its first seconds (how dearly it learns), median latency against
    no-load, mean limit and rejected share — the worst of `seeds` for each."""
    from rowloom.concurrency.clock import ManualClock
    from rowloom.config.request_admission import RequestAdmissionConfig
    from rowloom.models.admission.limits.factory import limit_from_config

    def run(server: ServerModel, mix: RequestMix | None, ceiling: int, seconds: float, seed: int, **kw) -> LimitRun:
        clock = ManualClock()
        limit = limit_from_config(RequestAdmissionConfig(), ceiling=ceiling, clock=clock)
        return simulate(limit, server, seconds=seconds, mix=mix, seed=seed, clock=clock, **kw)

    rows = []
    for name, server, mix, ceiling, seconds in CONDITIONS:
        runs, starts = [], []
        for seed in seeds:
            peak = peak_throughput(server, mix, seed)
            runs.append((run(server, mix, ceiling, seconds, seed), peak))
            starts.append(run(server, mix, ceiling, _START_UP_S, seed, measured_from=0.0).throughput / peak)
        rows.append(
            {
                "condition": name,
                "throughput_over_peak_min": round(min(r.throughput / peak for r, peak in runs), 3),
                "start_up_throughput_over_peak_min": round(min(starts), 3),
                "latency_over_no_load_max": round(max(r.latency_over_no_load for r, _ in runs), 3),
                "mean_limit": [round(r.mean_limit, 1) for r, _ in runs],
                "share_rejected_max": round(max(r.share_rejected for r, _ in runs), 4),
            }
        )
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    """The table as Markdown."""
    lines = [
        "| server | throughput ÷ peak (worst) | first 10 s: throughput ÷ peak (worst) "
        "| median latency ÷ no-load (worst) | mean limit per seed | 429 share |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['throughput_over_peak_min']} | {r['start_up_throughput_over_peak_min']} "
            f"| {r['latency_over_no_load_max']} "
            f"| {r['mean_limit']} | {r['share_rejected_max']} |"
        )
    return "\n".join(lines) + "\n"
