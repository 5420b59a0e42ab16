"""Client CPU per chat-completion request: rowloom's OpenAIClient (aiohttp) against an httpx.AsyncClient loop.

    python benchmarks/http_client_cpu.py [--requests 2000 --concurrency 16 --repeats 3] [--loop asyncio]

A zero-latency OpenAI-compatible server runs in a separate process on 127.0.0.1, so the CPU measured here
(getrusage user+sys of this process, divided by requests) is the client's alone. The server is rowloom's provider
simulator (`rowloom.bench.simulator.SimulatorProcess`) when it can be imported; otherwise, or with
`--server minimal`, a minimal aiohttp server defined in this script runs as a child process. Each client gets its own
connection pool sized to the concurrency, a warm-up, then `--requests` requests from `--concurrency` workers.
Clients run in alternating order across repeats; the table shows the median. They run on a run's event loop
(`rowloom.concurrency.loops`: asyncio's unless ROWLOOM_EVENT_LOOP says uvloop) unless `--loop` names one. Results go to
benchmarks/results/http_client_cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from rowloom.concurrency.loops import LOOP_VARIABLE
from rowloom.concurrency.loops import run as run_loop
from rowloom.config.models import ProviderConfig
from rowloom.models.clients import OpenAIClient, classify_chat_response
from rowloom.models.types import ChatRequest, ChatResponse, ProviderError

RESULTS = Path(__file__).parent / "results" / "http_client_cpu.json"
WARMUP_REQUESTS = 200
LOOPS = ("asyncio", "uvloop")
MESSAGES = (
    {"role": "system", "content": "You write one short product review."},
    {"role": "user", "content": "Write a review of a stainless steel water bottle in two sentences."},
)
REPLY = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Keeps water cold all day. Dents easily, though.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
    }
)
# The minimal server answers like a hosted API: JSON body plus the rate-limit headers the client parses.
REPLY_HEADERS = {
    "Content-Type": "application/json",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-tokens": "1999957",
    "x-ratelimit-reset-tokens": "1ms",
}


# ---------------------------------------------------------------------------------------------------------
# The server, in its own process.
# ---------------------------------------------------------------------------------------------------------


def serve_minimal() -> None:
    """Run the minimal zero-latency server; print the bound port on stdout, serve until stdin closes."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=REPLY, headers=REPLY_HEADERS)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


@contextmanager
def minimal_server() -> Any:
    """The minimal aiohttp server in a child process (its CPU is not in this process's rusage)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def simulator_server() -> Any:
    """rowloom's provider simulator (rowloom.bench.simulator) in its own process, with no latency."""
    from rowloom.bench.simulator import SimulatorConfig, SimulatorProcess

    sim = SimulatorProcess(SimulatorConfig(latency_s=0.0, capacity=100_000), port=0)
    with sim:
        yield sim.base_url


def server(kind: str) -> tuple[str, AbstractContextManager[str]]:
    """The server to use: the simulator when asked or (for "auto") when it exists, else the minimal one."""
    if kind in ("auto", "simulator"):
        try:
            import rowloom.bench.simulator  # noqa: F401
        except ImportError:
            if kind == "simulator":
                raise
        else:
            return "rowloom.bench.simulator", simulator_server()
    return "minimal aiohttp server (subprocess)", minimal_server()


# ---------------------------------------------------------------------------------------------------------
# The clients. Each does the same work per request: encode the body, POST, read, decode and classify.
# ---------------------------------------------------------------------------------------------------------

REQUEST = ChatRequest(model="bench-model", messages=MESSAGES, params={"max_tokens": 64, "temperature": 0.7})


async def run_rowloom(base_url: str, requests: int, concurrency: int) -> Callable[[int], Awaitable[Any]]:
    client = OpenAIClient(ProviderConfig(name="bench", base_url=base_url), pool_size=concurrency)

    async def one(_: int) -> None:
        await client.chat(REQUEST)

    one.close = client.aclose  # type: ignore[attr-defined]
    return one


async def run_aiohttp_raw(base_url: str, requests: int, concurrency: int) -> Callable[[int], Awaitable[Any]]:
    """Bare aiohttp session, same work as the httpx loop: the floor under OpenAIClient."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=120),
    )
    url = f"{base_url}/chat/completions"

    async def one(_: int) -> None:
        payload = orjson.dumps({**REQUEST.params, "model": REQUEST.model, "messages": REQUEST.messages})
        start = time.monotonic()
        async with session.post(url, data=payload) as resp:
            body = await resp.read()
        _check(classify_chat_response(resp.status, resp.headers, body, time.monotonic() - start))

    one.close = session.close  # type: ignore[attr-defined]
    return one


async def run_httpx(base_url: str, requests: int, concurrency: int) -> Callable[[int], Awaitable[Any]]:
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"Content-Type": "application/json"},
        timeout=httpx.Timeout(120),
    )
    url = f"{base_url}/chat/completions"

    async def one(_: int) -> None:
        payload = orjson.dumps({**REQUEST.params, "model": REQUEST.model, "messages": REQUEST.messages})
        start = time.monotonic()
        resp = await client.post(url, content=payload)
        _check(classify_chat_response(resp.status_code, resp.headers, resp.content, time.monotonic() - start))

    one.close = client.aclose  # type: ignore[attr-defined]
    return one


def _check(result: ChatResponse | ProviderError) -> None:
    if isinstance(result, ProviderError):
        raise result


CLIENTS = {
    f"rowloom OpenAIClient (aiohttp {aiohttp.__version__})": run_rowloom,
    f"raw aiohttp {aiohttp.__version__} session": run_aiohttp_raw,
    f"httpx {httpx.__version__} AsyncClient": run_httpx,
}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(one: Callable[[int], Awaitable[Any]], requests: int, concurrency: int) -> None:
    remaining = iter(range(requests))

    async def worker() -> None:
        for i in remaining:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(make: Callable[..., Any], base_url: str, requests: int, concurrency: int) -> dict[str, float]:
    one = await make(base_url, requests, concurrency)
    try:
        await _drive(one, WARMUP_REQUESTS, concurrency)
        cpu0, wall0 = _cpu_s(), time.perf_counter()
        await _drive(one, requests, concurrency)
        cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    finally:
        await one.close()
    return {"cpu_ms_per_request": cpu / requests * 1e3, "wall_s": wall, "requests_per_s": requests / wall}


async def bench(
    base_url: str, requests: int, concurrency: int, repeats: int
) -> tuple[str, dict[str, list[dict[str, float]]]]:
    """The event loop it ran on, and each client's runs."""
    loop = type(asyncio.get_running_loop())
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    names = list(CLIENTS)
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            runs[name].append(await measure(CLIENTS[name], base_url, requests, concurrency))
    return f"{loop.__module__}.{loop.__qualname__}", runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server", choices=("auto", "simulator", "minimal"), default="auto")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        help="the clients' event loop (default: a run's: ROWLOOM_EVENT_LOOP, else asyncio's)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_minimal()
        return

    if args.loop is not None:
        os.environ[LOOP_VARIABLE] = args.loop
    server_name, server_cm = server(args.server)
    with server_cm as base_url:
        loop_name, runs = run_loop(bench(base_url, args.requests, args.concurrency, args.repeats))

    summary = {
        name: {
            "cpu_ms_per_request_median": round(statistics.median(r["cpu_ms_per_request"] for r in rs), 4),
            "wall_s_median": round(statistics.median(r["wall_s"] for r in rs), 3),
            "requests_per_s_median": round(statistics.median(r["requests_per_s"] for r in rs), 1),
            "runs": [{k: round(v, 4) for k, v in r.items()} for r in rs],
        }
        for name, rs in runs.items()
    }
    width = max(map(len, summary)) + 2
    print(
        f"{args.requests} requests at {args.concurrency} concurrent, {args.repeats} repeats, server: {server_name}, "
        f"loop: {loop_name}"
    )
    print(f"{'client':<{width}}{'CPU ms/request':>16}{'wall s':>10}{'req/s':>10}")
    for name, row in summary.items():
        print(
            f"{name:<{width}}{row['cpu_ms_per_request_median']:>16.3f}"
            f"{row['wall_s_median']:>10.2f}{row['requests_per_s_median']:>10.0f}"
        )
    result = {
        "command": "python benchmarks/http_client_cpu.py " + " ".join(sys.argv[1:]),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "warmup_requests": WARMUP_REQUESTS,
        "server": server_name,
        "loop": loop_name,
        "measure": "getrusage(RUSAGE_SELF) user+sys of the client process / requests; median of repeats",
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "aiohttp": aiohttp.__version__,
            "httpx": httpx.__version__,
            "httpcore": _version("httpcore"),
            "orjson": orjson.__version__,
        },
        "clients": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
