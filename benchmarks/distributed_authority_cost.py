"""What one endpoint's authority costs at scale: CPU per renewal, with N workers each reporting a batch of samples.

Run: python benchmarks/distributed_authority_cost.py — pure Python (no Ray), prints µs per renewal and the load
of one authority at 100 workers renewing every 100 ms while 10k requests are in flight.
"""

from __future__ import annotations

import json
import random
import time

from rowloom.config.request_admission import RequestAdmissionConfig
from rowloom.engine.distributed.authority import CapacityAuthority
from rowloom.engine.distributed.grants import Report, Sample
from rowloom.models.admission.cooldown import Cooldown
from rowloom.models.admission.limits import limit_from_config
from rowloom.observe.clock import SYSTEM_CLOCK


def cost_per_renewal(workers: int, samples_per_report: int, renewals: int = 20000) -> float:
    config = RequestAdmissionConfig(initial_limit=10000, slow_start=False)
    limit = limit_from_config(config, ceiling=10000, clock=SYSTEM_CLOCK)
    authority = CapacityAuthority("k", limit, cooldown=Cooldown(threshold=8, default_s=1, max_s=60), lease_ttl_s=5)
    rng = random.Random(1)
    per_worker = 10000 // workers
    reports = [
        Report(
            f"w{i % workers}",
            per_worker + rng.randint(0, 10),
            per_worker,
            tuple(Sample(0.5, 0.5, per_worker, rng.random() < 0.001, 0, per_worker) for _ in range(samples_per_report)),
        )
        for i in range(renewals)
    ]
    started = time.perf_counter()
    for report in reports:
        authority.renew(report)
    return (time.perf_counter() - started) / renewals * 1e6


def main() -> None:
    # 10k in flight at ~1 s per request -> 10k samples/s; 100 workers renewing every 0.1 s -> 1000 reports/s
    # of ~10 samples each.
    out = {}
    for workers, samples in ((2, 10), (100, 10), (100, 100), (1000, 1)):
        us = cost_per_renewal(workers, samples)
        out[f"{workers}_workers_{samples}_samples"] = {"us_per_renewal": round(us, 1)}
    us = out["100_workers_10_samples"]["us_per_renewal"]
    out["authority_cpu_share_100w_10k_in_flight"] = round(1000 * us / 1e6, 3)  # seconds of CPU per second
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
