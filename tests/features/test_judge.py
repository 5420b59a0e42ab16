"""Judge columns: the model is told each rubric, what its scores mean and the reply's keys."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
from aiohttp import web

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job

RUBRICS = [
    {"name": "realistic", "description": "Could a real customer have written it?", "scores": {1: "no", 3: "yes"}},
    {"name": "polite", "scores": {0: "rude", 1: "polite"}},
]
REPLY = {"realistic": {"score": 3, "reason": "Plain words."}, "polite": {"score": 1, "reason": "Says thanks."}}


def _recording_app(bodies: list[dict[str, Any]]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": json.dumps(REPLY)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_the_judge_is_told_each_rubric_its_scores_and_the_reply_keys(tmp_path, loopback_http):
    bodies: list[dict[str, Any]] = []
    base_url = f"{await loopback_http(_recording_app(bodies))}/v1"
    config = DatasetConfig.from_dict(
        {
            "providers": [{"name": "p", "base_url": base_url}],
            "models": [{"alias": "j", "provider": "p", "model": "m"}],
            "columns": [
                {"name": "text", "type": "category", "values": ["{{ not a template }}"]},
                {"name": "grade", "type": "llm_judge", "model": "j", "prompt": "Rate: {{ text }}", "rubrics": RUBRICS},
            ],
            "run": {"row_group_size": 2},
        }
    )
    await run_job(config, 2, output=tmp_path / "out")

    prompt = bodies[0]["messages"][-1]["content"]
    assert prompt.startswith("Rate: {{ not a template }}\n\nScore each criterion below")  # values are data
    assert "- realistic: Could a real customer have written it? Scores: 1 = no; 3 = yes." in prompt
    assert "- polite: Scores: 0 = rude; 1 = polite." in prompt
    assert "with a key per criterion (realistic, polite) holding its score and reason." in prompt
    schema = bodies[0]["response_format"]["json_schema"]["schema"]
    assert (
        schema["properties"]["realistic"]["description"]
        == "Could a real customer have written it? Scores: 1 = no; 3 = yes."
    )
    assert pq.read_table(tmp_path / "out" / "data").column("grade").to_pylist() == [REPLY, REPLY]
