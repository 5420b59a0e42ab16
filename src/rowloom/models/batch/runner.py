"""`BatchRunner`: chat requests of one model alias answered through a batch API instead of one call each.

Owns gathering requests into batches (full at `max_requests` or `max_bytes`, or `flush_after_s` after the first
waiting one), submitting them (journal first), polling each batch with growing intervals, handing each line's
result to the request that asked, and resubmitting lines that came back retryable (failed, expired, cancelled)
in a later batch, up to `max_attempts`. A resumed run's requests find the lines of batches the journal says were
created and wait for those instead of submitting again. Must not decide what a failed cell becomes (the engine
does) nor price anything (the ledger does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rowloom.models.batch.journal import BatchJournal, JournalBatch
from rowloom.models.clients.openai_batch import BatchLine, BatchStatus, OpenAIBatchApi
from rowloom.models.types import ChatRequest, ChatResponse, ProviderError

#: The batch metadata entry that names the journal's key, so a resume can find a batch it never heard created.
METADATA_KEY = "rowloom_batch"
_GROWTH = 1.5  # each poll waits this much longer than the last, up to `poll_max_s`
T = TypeVar("T")


@dataclass(frozen=True)
class BatchSettings:
    """When a batch is full or due, how it is polled, and how often a line may be sent."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20
    flush_after_s: float = 30.0
    poll_min_s: float = 1.0
    poll_max_s: float = 60.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.max_bytes < 1 or self.max_attempts < 1:
            raise ValueError("max_requests, max_bytes and max_attempts must be at least 1")
        if not 0 < self.poll_min_s <= self.poll_max_s or self.flush_after_s < 0:
            raise ValueError("need 0 < poll_min_s <= poll_max_s and flush_after_s >= 0")


@dataclass
class BatchCounts:
    """What the runner sent and got back (the summary's and the report's batch figures)."""

    batches: int = 0
    lines: int = 0  # lines submitted, every attempt
    resubmitted: int = 0  # of those, lines sent again after a retryable failure
    resumed: int = 0  # lines answered by a batch a previous run created
    failed: int = 0  # requests given up on (their error raised to the caller)


@dataclass
class _Request:
    custom_id: str
    request: ChatRequest
    line: bytes
    future: asyncio.Future[ChatResponse]
    attempts: int = 0


@dataclass
class _Open:
    """A batch in flight: its journal key, its requests by custom_id, and its status as last read."""

    key: str
    requests: dict[str, _Request] = field(default_factory=dict)
    status: BatchStatus | None = None


class BatchRunner:
    """Batches of `alias`'s chat requests on `api`, journaled in `journal` (None: no resume across runs)."""

    def __init__(
        self, api: OpenAIBatchApi, alias: str, settings: BatchSettings, *, journal: BatchJournal | None = None
    ):
        self.api = api
        self.alias = alias
        self.settings = settings
        self.journal = journal
        self.counts = BatchCounts()
        self._waiting: list[_Request] = []
        self._waiting_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, _Open] = {}  # journal key -> batch in flight
        self._resumed: dict[str, tuple[str, asyncio.Future[ChatResponse | ProviderError]]] = {}

    # ------------------------------------------------------------ asking

    async def chat(self, custom_id: str, request: ChatRequest) -> ChatResponse:
        """The reply to `request`, from a batch; raises the line's `ProviderError` once it cannot be retried."""
        line = self.api.line_bytes(BatchLine(custom_id, request))
        attempts = 0
        resumed = self._resumed.pop(custom_id, None)
        if resumed is not None and resumed[0] == _digest(line):
            result = await resumed[1]
            if isinstance(result, ChatResponse):
                self.counts.resumed += 1
                return result
            if not result.retryable:
                self.counts.failed += 1
                raise result
            attempts = 1
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._enqueue(_Request(custom_id, request, line, future, attempts))
        return await future

    def _enqueue(self, item: _Request) -> None:
        size = len(item.line) + 1
        if self._waiting and self._waiting_bytes + size > self.settings.max_bytes:
            self._flush()
        self._waiting.append(item)
        self._waiting_bytes += size
        if len(self._waiting) >= self.settings.max_requests:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.settings.flush_after_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting, self._waiting_bytes = self._waiting, [], 0
        if batch:
            self._spawn(self._submit(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ one batch

    async def _submit(self, requests: list[_Request]) -> None:
        key = uuid.uuid4().hex
        batch = _Open(key, {r.custom_id: r for r in requests})
        for r in requests:
            r.attempts += 1
            self.counts.resubmitted += r.attempts > 1
        if self.journal is not None:
            self.journal.planned(key, self.alias, {r.custom_id: _digest(r.line) for r in requests})
        try:
            status = await self._create(key, requests)
        except ProviderError as error:
            if self.journal is not None:
                self.journal.settled(key)  # the provider holds no batch of these lines
            await asyncio.sleep(self.settings.poll_min_s)  # no tight loop against a failing endpoint
            for r in requests:
                self._settle(r, error)
            return
        self.counts.batches += 1
        self.counts.lines += len(requests)
        if self.journal is not None:
            self.journal.created(key, status.id)
        batch.status = status
        self._open[key] = batch
        try:
            results = await self._until_done(status, list(batch.requests))
        finally:
            self._open.pop(key, None)
        for custom_id, result in results.items():
            if (r := batch.requests.get(custom_id)) is not None:
                self._settle(r, result)
        if self.journal is not None:
            self.journal.settled(key)

    async def _create(self, key: str, requests: list[_Request]) -> BatchStatus:
        """Upload and create the batch. A create that failed in transit may still have created it: the batch
        is looked up by its key, for as long as the provider cannot say, before the lines are given back
        (sending them again would bill them twice)."""
        file_id = await self.api.upload([BatchLine(r.custom_id, r.request) for r in requests])
        try:
            return await self.api.create(file_id, metadata={METADATA_KEY: key})
        except ProviderError as error:
            if error.status is not None:  # the provider answered: it created nothing
                raise
            found = await self._persist(functools.partial(self.api.find, METADATA_KEY, key))
            if found is None:
                raise
            return found

    async def _until_done(self, status: BatchStatus, custom_ids: list[str]) -> dict[str, ChatResponse | ProviderError]:
        """Poll until the batch ends (waits growing from `poll_min_s` to `poll_max_s`); every line's result. A
        failed poll or download is tried again; one that can never succeed (a refused key) is every line's."""
        try:
            wait = self.settings.poll_min_s
            while not status.terminal:
                await asyncio.sleep(wait)
                wait = min(self.settings.poll_max_s, wait * _GROWTH)
                status = await self._persist(functools.partial(self.api.status, status.id))
            return await self._persist(functools.partial(self.api.results, status, custom_ids))
        except ProviderError as error:
            return dict.fromkeys(custom_ids, error)

    async def _persist(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` until it succeeds or fails for good (not retryable), waiting longer after each failure."""
        wait = self.settings.poll_min_s
        while True:
            try:
                return await call()
            except ProviderError as error:
                if not error.retryable:
                    raise
            await asyncio.sleep(wait)
            wait = min(self.settings.poll_max_s, wait * _GROWTH)

    def _settle(self, r: _Request, result: ChatResponse | ProviderError) -> None:
        if r.future.done():
            return
        if isinstance(result, ChatResponse):
            r.future.set_result(result)
        elif result.retryable and r.attempts < self.settings.max_attempts:
            self._enqueue(r)
        else:
            self.counts.failed += 1
            r.future.set_exception(result)

    # ------------------------------------------------------------ resume and shutdown

    async def start(self) -> None:
        """Pick up the batches the journal says this alias planned and never settled: poll the created ones
        (found by their metadata when the run died before it heard the id), so requests for their lines wait
        for them. A planned batch the provider never created is settled: its lines are free to send."""
        if self.journal is None:
            return
        for entry in self.journal.open_batches():
            if entry.alias != self.alias:
                continue
            status = await self._status_of(entry)
            if status is None:
                self.journal.settled(entry.key)
                continue
            loop = asyncio.get_running_loop()
            futures = {cid: loop.create_future() for cid in entry.lines}
            for custom_id, digest in entry.lines.items():
                self._resumed[custom_id] = (digest, futures[custom_id])
            self._spawn(self._resume(entry.key, status, futures))

    async def _status_of(self, entry: JournalBatch) -> BatchStatus | None:
        if entry.batch_id is not None:
            return await self.api.status(entry.batch_id)
        found = await self.api.find(METADATA_KEY, entry.key)
        if found is not None and self.journal is not None:
            self.journal.created(entry.key, found.id)
        return found

    async def _resume(
        self, key: str, status: BatchStatus, futures: dict[str, asyncio.Future[ChatResponse | ProviderError]]
    ) -> None:
        results = await self._until_done(status, list(futures))
        for custom_id, future in futures.items():
            if not future.done():
                future.set_result(results[custom_id])
        if self.journal is not None:
            self.journal.settled(key)

    def open_batches(self) -> list[str]:
        """Ids of the batches created and not yet finished."""
        return [b.status.id for b in self._open.values() if b.status is not None]

    async def close(self, *, cancel: bool = False) -> list[str]:
        """Stop gathering and polling; the ids of batches left running (cancelled first with `cancel`). Requests
        still waiting for a batch get `CancelledError`; the journal keeps what a resume needs."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running = self.open_batches()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ProviderError):
                await task
        for r in self._waiting:
            r.future.cancel()
        self._waiting.clear()
        if cancel:
            for batch_id in running:
                with contextlib.suppress(ProviderError):
                    await self.api.cancel(batch_id)
        return running


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()[:32]
