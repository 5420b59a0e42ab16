"""Fixtures shared across test folders: an S3-compatible object store on 127.0.0.1 (moto's server), and tiny
HTTP servers on 127.0.0.1 for providers the simulator does not imitate.

Runs in tests keep no reply cache unless a test asks for one (`run.cache.mode`/`path`, in its tmp_path): the
environment below is set before any test, subprocess or Ray worker starts, and nothing is written to the user's
cache folder.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

os.environ["ROWLOOM_CACHE"] = "off"
os.environ["ROWLOOM_CACHE_DIR"] = tempfile.mkdtemp(prefix="rowloom-test-cache-")


@dataclass(frozen=True)
class ObjectStore:
    """An S3 endpoint on loopback with one bucket; `uri(prefix)` is a pyarrow.fs URI that reaches it."""

    port: int
    bucket: str = "rowloom"

    def uri(self, prefix: str, *, bucket: str | None = None) -> str:
        query = f"endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1"
        return f"s3://test-key:test-secret@{bucket or self.bucket}/{prefix}?{query}"

    def filesystem(self):
        """The store as a pyarrow filesystem (paths in it are `bucket/prefix/...`)."""
        from pyarrow import fs

        return fs.FileSystem.from_uri(self.uri(""))[0]


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    moto_server = pytest.importorskip(
        "moto.server", reason="the object-store tests need moto's S3 server: pip install -e '.[dev]'"
    )
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = ObjectStore(port)
    try:
        from pyarrow import fs

        creating, _ = fs.FileSystem.from_uri(store.uri("") + "&allow_bucket_creation=true")
        creating.create_dir(store.bucket)
        yield store
    finally:
        server.stop()


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def loopback_http() -> AsyncIterator[Serve]:
    """`await serve(app)` runs an aiohttp application on 127.0.0.1 (the OS picks the port) and returns its root
    URL, `http://127.0.0.1:PORT`; every server started this way stops when the test ends."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield serve
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
