"""`rowloom estimate` with the real local model: prompts are counted by the llama.cpp server's own tokenizer, and
for a column with only sampler inputs the dry count equals what the server reports when the rows really run.

Skipped (with the install commands as the reason) when xllamacpp or the SmolLM2 model file is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rowloom.config import DatasetConfig
from rowloom.config.dataset import load_yaml_file
from rowloom.engine.estimate import estimate
from rowloom.engine.estimate.counting import LLAMA_CPP
from rowloom.engine.job import run_job

from .helpers import needs_model, server_pids, wait_gone

pytestmark = [needs_model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def quickstart_tickets() -> DatasetConfig:
    """The quickstart's samplers and its `ticket` column, with short replies so the real run takes seconds."""
    data = load_yaml_file(ROOT / "examples" / "quickstart.yaml")
    data["columns"] = [c for c in data["columns"] if c["name"] in ("product", "mood", "ticket")]
    data["models"] = [m for m in data["models"] if m["alias"] == "writer"]
    data["models"][0]["inference"]["max_tokens"] = 4
    data["providers"][0]["parallel_slots"] = 2
    data["run"]["seed"] = 3
    return DatasetConfig.from_dict(data)


async def test_dry_ticket_prompts_counted_by_the_model_tokenizer_match_the_servers_reported_prompt_tokens():
    config = quickstart_tickets()
    seen: list[int] = []

    result = await estimate(config, 6)
    full = await run_job(config, 6, output=None, on_start=lambda scheduler, stats: seen.extend(server_pids()))

    [ticket] = result.columns
    assert result.counted_by == {"writer": LLAMA_CPP}
    assert ticket.dry.prompt_tokens.low == ticket.dry.prompt_tokens.high  # sampler inputs only: exact
    reported = full.summary["ledger"]["by_column"]["ticket"]["prompt_tokens"]
    assert abs(ticket.dry.prompt_tokens.high - reported) <= 0.10 * reported, (ticket.dry.prompt_tokens, reported)
    assert ticket.dry.completion_tokens.high == 6 * 4  # the worst case: max_tokens per request
    assert not server_pids(), "a dry pass left its llama.cpp server running"
    [pid] = seen
    assert wait_gone(pid, 5)
