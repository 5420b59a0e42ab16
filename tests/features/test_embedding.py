"""Embedding columns: batched /v1/embeddings requests admitted under the embeddings domain, list<float32> out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rowloom.bench.sim_replies import embedding_vector
from rowloom.bench.simulator import SimulatorConfig, SimulatorServer
from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.observe.events.request import RequestAdmitted
from rowloom.observe.sinks import MemorySink

from .helpers import CHAT_MODEL, EMBED_MODEL, config, config_dict

TOPIC = {"name": "topic", "type": "category", "values": ["tides", "ferns", "comets"]}


async def test_embeddings_are_batched_admitted_as_embeddings_and_written_as_float32_lists(sim, tmp_path):
    columns = [TOPIC, {"name": "vec", "type": "embedding", "model": "e", "input": "About {{ topic }}", "batch_size": 4}]
    sink = MemorySink()
    await run_job(config(sim.base_url, columns), 30, output=tmp_path / "out", sink=sink)
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.schema.field("vec").type == pa.list_(pa.float32())
    for topic, vector in zip(table.column("topic").to_pylist(), table.column("vec").to_pylist(), strict=True):
        expected = np.asarray(embedding_vector(EMBED_MODEL, f"About {topic}", 16), dtype=np.float32)
        assert np.array_equal(np.asarray(vector, dtype=np.float32), expected)  # deterministic per text
    keys = {e.key for e in sink.of(RequestAdmitted)}
    assert keys == {f"sim/{EMBED_MODEL} [embeddings]"}
    stats = await sim.stats()
    assert stats["by_path"] == {"/v1/embeddings": 9}  # 3 row groups of 10 rows, 4 inputs a request


async def test_embeddings_share_the_aggregate_cap_of_their_provider_and_model(tmp_path):
    """Chat and embeddings of one provider+model are two admission keys but one aggregate cap."""
    sim_config = SimulatorConfig(latency_s=0.02, capacity=64, models=(CHAT_MODEL,))
    async with SimulatorServer(sim_config) as sim:
        data = config_dict(
            sim.base_url,
            [
                TOPIC,
                {"name": "text", "type": "llm_text", "model": "w", "prompt": "On {{ topic }}"},
                {"name": "vec", "type": "embedding", "model": "same", "input": "{{ topic }}", "batch_size": 2},
            ],
            run={"request_admission": {"caps": [{"provider": "sim", "model": CHAT_MODEL, "max_in_flight": 3}]}},
        )
        data["models"].append({"alias": "same", "provider": "sim", "model": CHAT_MODEL})
        sink = MemorySink()
        await run_job(DatasetConfig.from_dict(data), 40, output=tmp_path / "out", sink=sink)
        stats = await sim.stats()
    assert set(stats["by_path"]) == {"/v1/chat/completions", "/v1/embeddings"}
    assert stats["peak_in_flight"] <= 3  # chat and embeddings together stay under the one cap
    keys = {e.key for e in sink.of(RequestAdmitted)}
    assert keys == {f"sim/{CHAT_MODEL}", f"sim/{CHAT_MODEL} [embeddings]"}


async def test_failed_embedding_requests_drop_their_rows(tmp_path):
    sim_config = SimulatorConfig(latency_s=0.001, error_rate=1.0, error_status=400, models=(EMBED_MODEL,))
    async with SimulatorServer(sim_config) as sim:
        columns = [TOPIC, {"name": "vec", "type": "embedding", "model": "e", "input": "{{ topic }}", "batch_size": 5}]
        result = await run_job(config(sim.base_url, columns, run={"max_error_rate": 1.0}), 20, output=tmp_path / "out")
    assert result.summary["records_written"] == 0
    assert result.summary["rows_dropped"] == 20
    assert list(result.summary["rows_dropped_by_reason"]) == ["vec:client_error"]
