"""The endpoint-pool benchmark scenarios build valid pool configs whose members are the simulated providers
(the runs themselves are `rowloom bench -s pool_*`, a benchmark, not a test)."""

from __future__ import annotations

from rowloom.bench.pool_scenarios import POOL_ALIAS, POOL_SCENARIOS, pool_members
from rowloom.bench.scenarios import SCENARIOS
from rowloom.config.dataset import DatasetConfig


def test_pool_scenarios_are_registered_and_build_one_pool_of_their_simulators():
    assert set(POOL_SCENARIOS) <= set(SCENARIOS)
    for scenario in POOL_SCENARIOS.values():
        urls = {ep.provider: f"http://127.0.0.1:{9000 + i}/v1" for i, ep in enumerate(scenario.endpoints)}
        config = DatasetConfig.from_dict(scenario.build(urls))
        (model,) = config.models
        assert model.alias == POOL_ALIAS and model.is_pool, scenario.name
        members = [(m.model.provider, m.tier) for m in model.members()]
        assert members == [(ep.provider, ep.tier) for ep in pool_members(scenario)], scenario.name
        labels = [ep.label for ep in scenario.endpoints]
        assert labels == [ep.provider for ep in scenario.endpoints] and len(set(labels)) == len(labels)
    (nospill,) = POOL_SCENARIOS["pool_fallback_nospill"].build({"primary": "http://127.0.0.1:1/v1"})["models"]
    assert nospill["spill_after_s"] == 3600


def test_the_known_capacity_reference_fixes_each_member_at_its_simulators_capacity():
    scenario = POOL_SCENARIOS["pool_vllm_known"]
    urls = {ep.provider: f"http://127.0.0.1:{9000 + i}/v1" for i, ep in enumerate(scenario.endpoints)}
    config = DatasetConfig.from_dict(scenario.build(urls))
    (model,) = config.models
    assert [m.model.max_parallel_requests for m in model.members()] == [ep.sim.capacity for ep in scenario.endpoints]
    assert config.run.request_admission.algorithm == "fixed"
