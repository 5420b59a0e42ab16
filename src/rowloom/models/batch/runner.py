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

from rowloom.concurrency.clock import SYSTEM_CLOCK, Clock
from rowloom.config.batch import BatchConfig
from rowloom.errors import RowloomError
from rowloom.models.admission.health import public_url
from rowloom.models.batch.journal import BatchJournal, JournalBatch
from rowloom.models.clients.openai_batch import BatchLine, BatchStatus, NotRun, OpenAIBatchApi
from rowloom.models.types import ChatRequest, ChatResponse, ProviderError
from rowloom.observe.context import detached
from rowloom.observe.events.batch import BatchFinished, BatchSubmitted
from rowloom.observe.sinks import EventSink

#: The batch metadata entry that names the journal's key, so a resume can find a batch it never heard created.
METADATA_KEY = "rowloom_batch"
_GROWTH = 1.5  # each poll waits this much longer than the last, up to `poll_max_s`
_NO_BATCH_API = frozenset({404, 405})  # the files or batches endpoint is not there
T = TypeVar("T")


class BatchApiRefused(RowloomError):
    """A setup error: the provider refused its batch API itself — it has none (404/405 from the files or batches
    endpoint: a server that speaks OpenAI's chat API without its batch API) or it refused the key (401/403). No
    batch can get past that, so the run stops instead of dropping row after row; rows already written are kept."""

    def __init__(self, alias: str, base_url: str, error: ProviderError):
        self.alias = alias
        self.error = error
        if error.endpoint_wide:
            what, advice = "it refused the API key", "check the key's variable or file and its access to batches"
        else:
            what, advice = "it has no batch API there", f"set `execution: online` on model {alias!r}"
        super().__init__(
            f"model {alias!r} sends requests in batches, but {base_url} refused them ({what}): {advice}. "
            f"It said: {error}"
        )


@dataclass(frozen=True)
class BatchSettings:
    """When a batch is full or due, how it is polled, and how often a line may be sent."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20
    flush_after_s: float = 30.0
    poll_min_s: float = 1.0
    poll_max_s: float = 60.0
    max_attempts: int = 3
    completion_window: str = "24h"
    retry_online: bool = False  # the executor's: a line failed in every batch goes once online

    @classmethod
    def of(cls, config: BatchConfig) -> BatchSettings:
        """The settings a model's `batch:` config gives."""
        return cls(
            max_requests=config.max_requests,
            max_bytes=int(config.max_bytes),
            flush_after_s=config.flush_after_s,
            poll_min_s=config.poll_min_s,
            poll_max_s=config.poll_max_s,
            max_attempts=config.max_attempts,
            completion_window=config.completion_window,
            retry_online=config.retry_online,
        )

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
    """Batches of `alias`'s chat requests on `api`, journaled in `journal` (None: no resume across runs); each
    batch submitted and finished is an event on `sink` under `key` (the endpoint's label behind `batch:`)."""

    def __init__(
        self,
        api: OpenAIBatchApi,
        alias: str,
        settings: BatchSettings,
        *,
        journal: BatchJournal | None = None,
        sink: EventSink | None = None,
        key: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.api = api
        self.alias = alias
        self.settings = settings
        self.journal = journal
        self.sink = sink
        self.key = key or f"batch:{alias}"
        self.clock = clock
        self.counts = BatchCounts()
        self._waiting: list[_Request] = []
        self._waiting_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, _Open] = {}  # journal key -> batch in flight
        # Lines of batches an earlier run created: still open (polled from `start`), or settled, whose results
        # went to rows that run may not have written (read again from the batch's output, never sent again).
        self._resumed: dict[str, tuple[str, asyncio.Future[ChatResponse | ProviderError]]] = {}
        self._finished: dict[str, tuple[str, JournalBatch]] = {}
        self._rereads: dict[str, asyncio.Task[dict[str, ChatResponse | ProviderError]]] = {}
        self.refused: BatchApiRefused | None = None  # the provider refused its batch API: nothing more is sent

    # ------------------------------------------------------------ asking

    async def chat(self, custom_id: str, request: ChatRequest) -> ChatResponse:
        """The reply to `request`, from a batch; raises the line's `ProviderError` once it cannot be retried."""
        result, _ = await self.ask(custom_id, request)
        if isinstance(result, ProviderError):
            raise result
        return result

    async def ask(self, custom_id: str, request: ChatRequest) -> tuple[ChatResponse | ProviderError, int]:
        """The reply to `request`, or the error its line ended with once it could not be retried, and how many
        times the line was sent (a line answered by a batch an earlier run created counts once). Raises
        `BatchApiRefused` once the provider refused its batch API."""
        if self.refused is not None:
            raise self.refused
        line = self.api.line_bytes(BatchLine(custom_id, request))
        attempts = 0
        result = await self._earlier(custom_id, _digest(line))
        if result is not None:
            if isinstance(result, ChatResponse):
                self.counts.resumed += 1
                return result, 1
            if not result.retryable or self.settings.max_attempts == 1:
                self.counts.failed += 1
                return result, 1
            attempts = 1
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        item = _Request(custom_id, request, line, future, attempts)
        self._enqueue(item)
        try:
            return await future, item.attempts
        except ProviderError as error:
            return error, item.attempts

    async def _earlier(self, custom_id: str, digest: str) -> ChatResponse | ProviderError | None:
        """The result of this very line (same custom_id, same request) from a batch an earlier run created, or
        None when no such batch holds it."""
        resumed = self._resumed.pop(custom_id, None)
        finished = self._finished.pop(custom_id, None)
        if resumed is not None and resumed[0] == digest:
            return await resumed[1]
        if finished is None or finished[0] != digest:
            return None
        entry = finished[1]
        assert entry.batch_id is not None
        reread = self._rereads.get(entry.batch_id)
        if reread is None:
            reread = self._rereads[entry.batch_id] = asyncio.get_running_loop().create_task(
                self._reread(entry), context=detached()
            )
        return (await asyncio.shield(reread))[custom_id]

    async def _reread(self, entry: JournalBatch) -> dict[str, ChatResponse | ProviderError]:
        """Every line's result of a batch an earlier run settled, read again from the provider (its lines are
        only ever asked again when the rows they went to were not written)."""
        assert entry.batch_id is not None
        lines = list(entry.lines)
        self._emit_submitted(entry.batch_id, len(lines), 0, 0, resumed=True)
        started = self.clock.now()
        try:
            status = await self._persist(functools.partial(self.api.status, entry.batch_id))
            if not status.terminal:  # settled means ended; a provider that says otherwise is polled to the end
                status, results = await self._until_done(status, lines)
            else:
                results = await self._persist(functools.partial(self.api.results, status, lines))
        except ProviderError as error:  # the provider no longer holds the batch or its files: its lines go again
            return {cid: NotRun(f"batch {entry.batch_id} can no longer be read ({error})") for cid in lines}
        self._emit_finished(status, results, started)
        return results

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
        # A batch serves many cells: its events carry none of the ids of the cell whose request started it.
        task = asyncio.get_running_loop().create_task(work, context=detached())
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
            lines = {r.custom_id: _digest(r.line) for r in requests}
            self.journal.planned(key, self.alias, lines, self.api.provider_record())
        try:
            status = await self._create(key, requests)
        except ProviderError as error:
            if self.journal is not None:
                self.journal.settled(key)  # the provider holds no batch of these lines
            if error.endpoint_wide or error.status in _NO_BATCH_API:
                where = public_url(self.api.provider_record().get("base_url"))
                self.refused = self.refused or BatchApiRefused(self.alias, where, error)
                self._refuse_all(requests)
                return
            await asyncio.sleep(self.settings.poll_min_s)  # no tight loop against a failing endpoint
            for r in requests:
                self._settle(r, error)
            return
        self.counts.batches += 1
        self.counts.lines += len(requests)
        if self.journal is not None:
            self.journal.created(key, status.id)
        self._emit_submitted(
            status.id, len(requests), sum(r.attempts > 1 for r in requests), sum(len(r.line) + 1 for r in requests)
        )
        batch.status = status
        self._open[key] = batch
        started = self.clock.now()
        try:
            status, results = await self._until_done(status, list(batch.requests))
        finally:
            self._open.pop(key, None)
        self._emit_finished(status, results, started)
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
            return await self.api.create(
                file_id, metadata={METADATA_KEY: key}, completion_window=self.settings.completion_window
            )
        except ProviderError as error:
            if error.status is not None:  # the provider answered: it created nothing
                raise
            found = await self._persist(functools.partial(self.api.find, METADATA_KEY, key))
            if found is None:
                raise
            return found

    async def _until_done(
        self, status: BatchStatus, custom_ids: list[str]
    ) -> tuple[BatchStatus, dict[str, ChatResponse | ProviderError]]:
        """Poll until the batch ends (waits growing from `poll_min_s` to `poll_max_s`); its last status and every
        line's result. A failed poll or download is tried again; one that can never succeed (a refused key) is
        every line's."""
        try:
            wait = self.settings.poll_min_s
            while not status.terminal:
                await asyncio.sleep(wait)
                wait = min(self.settings.poll_max_s, wait * _GROWTH)
                status = await self._persist(functools.partial(self.api.status, status.id))
            return status, await self._persist(functools.partial(self.api.results, status, custom_ids))
        except ProviderError as error:
            return status, dict.fromkeys(custom_ids, error)

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

    def _refuse_all(self, requests: list[_Request]) -> None:
        """Every request given, and every one waiting for a batch, fails with the refusal."""
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        for r in [*requests, *waiting]:
            if not r.future.done():
                r.future.set_exception(self.refused)  # type: ignore[arg-type]

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

    async def start(self, needed: Callable[[str], bool] | None = None) -> None:
        """Pick up the batches the journal says this alias planned and never settled: poll the created ones
        (found by their metadata when the run died before it heard the id), so requests for their lines wait
        for them. A planned batch the provider never created is settled: its lines are free to send. Lines of
        settled batches are answered from those batches' results, read again when a request asks for one;
        `needed(custom_id)` False says no request will (its row is written), so it is not kept in memory."""
        if self.journal is None:
            return
        for entry in self.journal.batches():
            if entry.alias != self.alias:
                continue
            if entry.settled:
                if entry.batch_id is not None:
                    self._finished.update(
                        (cid, (digest, entry)) for cid, digest in entry.lines.items() if needed is None or needed(cid)
                    )
                continue
            status = await self._status_of(entry)
            if status is None:
                self.journal.settled(entry.key)
                continue
            loop = asyncio.get_running_loop()
            futures = {cid: loop.create_future() for cid in entry.lines}
            for custom_id, digest in entry.lines.items():
                self._resumed[custom_id] = (digest, futures[custom_id])
            self._emit_submitted(status.id, len(futures), 0, 0, resumed=True)
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
        started = self.clock.now()
        status, results = await self._until_done(status, list(futures))
        self._emit_finished(status, results, started)
        for custom_id, future in futures.items():
            if not future.done():
                future.set_result(results[custom_id])
        if self.journal is not None:
            self.journal.settled(key)

    def _emit_submitted(self, batch_id: str, lines: int, resubmitted: int, size: int, *, resumed: bool = False) -> None:
        if self.sink is not None:
            self.sink.emit(
                BatchSubmitted(
                    ts=self.clock.now(),
                    key=self.key,
                    alias=self.alias,
                    batch_id=batch_id,
                    lines=lines,
                    resubmitted=resubmitted,
                    size_bytes=size,
                    resumed=resumed,
                )
            )

    def _emit_finished(
        self, status: BatchStatus, results: dict[str, ChatResponse | ProviderError], started: float
    ) -> None:
        if self.sink is not None:
            succeeded = sum(isinstance(r, ChatResponse) for r in results.values())
            not_run = sum(isinstance(r, NotRun) for r in results.values())
            self.sink.emit(
                BatchFinished(
                    ts=self.clock.now(),
                    key=self.key,
                    alias=self.alias,
                    batch_id=status.id,
                    status=status.status,
                    lines=len(results),
                    succeeded=succeeded,
                    failed=len(results) - succeeded - not_run,
                    not_run=not_run,
                    waited_s=self.clock.now() - started,
                )
            )

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
        tasks = [*self._tasks, *self._rereads.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
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


def line_id(task: str | None, body: bytes) -> str:
    """The custom_id of a batch line: the asking task's id (`row_group:column:row`, unique in a run and the same in
    a resumed one; a random one outside a run) and a digest of the request body (a re-ask is another line)."""
    return f"{task or uuid.uuid4().hex}#{hashlib.sha256(body).hexdigest()[:16]}"


def row_group_of(custom_id: str) -> int | None:
    """The row group of the task a `line_id` names, or None when it names none."""
    head = custom_id.split(":", 1)[0]
    return int(head) if head.isdigit() else None


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()[:32]
