"""A pooled alias on Ray: every endpoint of the pool has its own capacity authority, and a worker routes the pool's
requests among its grants (no Ray needed: the worker's runtime is built here directly)."""

from __future__ import annotations

from rowloom.concurrency.clock import ManualClock
from rowloom.config import DatasetConfig
from rowloom.engine.distributed.grants import Grant
from rowloom.engine.distributed.worker import GrantedRuntime, endpoints_of
from rowloom.observe.sinks import NullSink

CONFIG = {
    "providers": [
        {"name": "a", "base_url": "http://127.0.0.1:9/v1"},
        {"name": "b", "base_url": "http://127.0.0.1:10/v1"},
    ],
    "models": [
        {
            "alias": "writer",
            "model": "m",
            "endpoints": [{"provider": "a", "max_parallel_requests": 8}, {"provider": "b", "model": "n"}],
            "max_parallel_requests": 32,
        }
    ],
    "columns": [{"name": "t", "type": "llm_text", "model": "writer", "prompt": "hi"}],
}


async def test_each_endpoint_of_a_pool_has_its_authority_and_the_worker_routes_by_its_grants():
    config = DatasetConfig.from_dict(CONFIG)
    endpoints = endpoints_of(config)
    assert {label: e.ceiling for label, e in endpoints.items()} == {"a/m": 8, "b/n": 32}
    runtime = GrantedRuntime(config, sink=NullSink(), clock=ManualClock())
    assert set(runtime.grants) == {"a/m", "b/n"}
    runtime.grants["a/m"].apply(Grant(share=2, ttl_s=60.0, epoch=0, limit=8))
    runtime.grants["b/n"].apply(Grant(share=6, ttl_s=60.0, epoch=0, limit=32))
    admission = runtime.admission
    assert admission.capacity("writer") == 8
    leases = [admission.try_acquire("writer") for _ in range(9)]
    assert leases[-1] is None  # the grants are the whole of the worker's capacity
    served = [lease.key.label for lease in leases if lease is not None]
    assert served.count("a/m") == 2 and served.count("b/n") == 6
