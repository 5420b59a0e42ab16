"""The simulator's batch API, in OpenAI's shape: uploaded files, batches and their lifecycle, and its counters.

Owns the files, the batches and the `batches` block of `/stats`; renders each line's reply with the chat renderer
the app gives it. A batch advances when it is read (its state is a function of the time since it was created),
so no timer runs per batch or per line. Must run on the app's event loop; all state is touched only from it.

Lifecycle: `validating` → `in_progress` → `finalizing` → `completed`; `expired` when `batch_expire_s` passes
before every line finished; `cancelling` → `cancelled` on cancel. Each line finishes at its own moment in
[delay / 2, delay] after the batch was created (`batch_delay_s`), so the request counts move while a client polls.
A finished line lands in the output file (status 200) or, with `batch_fail_rate`, in the error file (status 500);
a line that expired or was cancelled before it finished lands in the error file with `batch_expired` /
`batch_cancelled`. `duplicate_lines` counts lines whose `custom_id` was submitted before and has not failed: the
resubmission that bills a line twice.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

_JSON_HEADERS = {"Content-Type": "application/json"}
BATCH_ENDPOINT = "/v1/chat/completions"
# What a line's `custom_id` came to: a later submission of a failed one is a retry, of any other a duplicate.
_PENDING, _DONE, _FAILED = "pending", "done", "failed"

RenderLine = Callable[[dict[str, Any]], tuple[dict[str, Any], int, int]]  # body -> (reply, prompt, completion)


@dataclass(slots=True)
class _File:
    id: str
    purpose: str
    filename: str
    content: bytes
    created_at: int

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
        }


@dataclass(slots=True)
class _Line:
    custom_id: str
    body: dict[str, Any]
    finish_s: float  # since the batch was created
    outcome: str | None = None  # "ok", "failed", "expired", "cancelled" once settled


@dataclass
class _Batch:
    id: str
    input_file_id: str
    completion_window: str
    created: float  # loop time
    created_at: int  # unix seconds, as the API reports it
    metadata: dict[str, Any] | None
    lines: list[_Line]
    status: str = "in_progress"
    ended_at: float | None = None  # loop time a terminal status was reached
    cancel_requested: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


class BatchService:
    """Files and batches of one simulated provider (`POST /v1/files`, `/v1/batches`, …)."""

    def __init__(self, *, delay_s: float, fail_rate: float, expire_s: float | None, seed: int, render: RenderLine):
        self._delay = delay_s
        self._fail_rate = fail_rate
        self._expire = expire_s
        self._render = render
        self._rng = random.Random(seed)
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._lines: dict[str, str] = {}  # custom_id -> _PENDING / _DONE / _FAILED
        self._counts: dict[str, int] = {}
        self.reset()

    def routes(self, app: web.Application, denied: Callable[[web.Request], web.Response | None]) -> None:
        """Serve the batch endpoints on `app`; `denied(request)` answers a request without a valid key."""

        def guarded(handler: Callable[[web.Request], Awaitable[web.Response]]):
            async def serve(request: web.Request) -> web.Response:
                return denied(request) or await handler(request)

            return serve

        app.router.add_post("/v1/files", guarded(self._upload))
        app.router.add_get("/v1/files/{file_id}", guarded(self._file))
        app.router.add_get("/v1/files/{file_id}/content", guarded(self._content))
        app.router.add_post("/v1/batches", guarded(self._create))
        app.router.add_get("/v1/batches", guarded(self._list))
        app.router.add_get("/v1/batches/{batch_id}", guarded(self._get))
        app.router.add_post("/v1/batches/{batch_id}/cancel", guarded(self._cancel))

    def reset(self) -> None:
        """Zero the counters (files and batches stay: a client may still poll them)."""
        self._counts = dict.fromkeys(
            (
                "files_uploaded",
                "batches_created",
                "batches_completed",
                "batches_expired",
                "batches_cancelled",
                "batches_failed",
                "lines_submitted",
                "lines_completed",
                "lines_failed",
                "lines_expired",
                "lines_cancelled",
                "duplicate_lines",
                "prompt_tokens",
                "completion_tokens",
            ),
            0,
        )

    def snapshot(self) -> dict[str, Any]:
        """The `batches` block of `/stats` (batches still open are advanced first)."""
        for batch in self._batches.values():
            self._advance(batch)
        return {**self._counts, "open": sum(b.ended_at is None for b in self._batches.values())}

    # --- files -------------------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except ValueError:
            return _error(400, "the upload must be multipart/form-data with `purpose` and `file`", "file")
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            return _error(400, f"purpose must be 'batch' (got {purpose!r})", "purpose")
        if not isinstance(upload, web.FileField):
            return _error(400, "the form has no `file` part", "file")
        file = _File(f"file-sim{next(self._ids)}", "batch", upload.filename, upload.file.read(), self._unix())
        self._files[file.id] = file
        self._counts["files_uploaded"] += 1
        return _json(file.document())

    async def _file(self, request: web.Request) -> web.Response:
        file = self._files.get(request.match_info["file_id"])
        return _json(file.document()) if file else _error(404, "no such file", "file_id", status_type="not_found")

    async def _content(self, request: web.Request) -> web.Response:
        file = self._files.get(request.match_info["file_id"])
        if file is None:
            return _error(404, "no such file", "file_id", status_type="not_found")
        return web.Response(body=file.content, headers={"Content-Type": "application/jsonl"})

    # --- batches -----------------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "the request body is not valid JSON", None)
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object", None)
        if body.get("endpoint") != BATCH_ENDPOINT:
            return _error(400, f"endpoint must be {BATCH_ENDPOINT!r}", "endpoint")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'", "completion_window")
        file = self._files.get(str(body.get("input_file_id")))
        if file is None:
            return _error(400, "input_file_id names no uploaded file", "input_file_id")
        now = self._loop.time()
        batch = _Batch(
            f"batch_sim{next(self._ids)}",
            file.id,
            "24h",
            now,
            self._unix(),
            body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
            [],
        )
        self._batches[batch.id] = batch
        self._counts["batches_created"] += 1
        batch.errors = self._parse(file.content, batch)
        if batch.errors:
            batch.status, batch.ended_at = "failed", now
            batch.lines.clear()
            self._counts["batches_failed"] += 1
        else:
            for line in batch.lines:
                self._submitted(line.custom_id)
        return _json(self._document(batch))

    async def _get(self, request: web.Request) -> web.Response:
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "no such batch", "batch_id", status_type="not_found")
        self._advance(batch)
        return _json(self._document(batch))

    async def _list(self, request: web.Request) -> web.Response:
        """Batches newest first, `limit` at a time (1-100, default 20) after the batch id `after`."""
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, "limit must be an integer", "limit")
        if not 1 <= limit <= 100:
            return _error(400, "limit must be from 1 to 100", "limit")
        ordered = list(reversed(self._batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [batch.id for batch in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        page = ordered[:limit]
        for batch in page:
            self._advance(batch)
        return _json(
            {
                "object": "list",
                "data": [self._document(batch) for batch in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(ordered) > limit,
            }
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "no such batch", "batch_id", status_type="not_found")
        self._advance(batch)
        if batch.ended_at is None:
            batch.cancel_requested = self._loop.time() - batch.created
            self._advance(batch)
        return _json(self._document(batch))

    def _parse(self, content: bytes, batch: _Batch) -> list[dict[str, Any]]:
        """Fill `batch.lines` from the input file; the validation errors (a batch with any fails as a whole)."""
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                errors.append(_line_error("invalid_json_line", "the line is not valid JSON", number))
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or not custom_id:
                errors.append(_line_error("missing_custom_id", "every line needs a string custom_id", number))
            elif custom_id in seen:
                errors.append(_line_error("duplicate_custom_id", f"custom_id {custom_id!r} repeats", number))
            elif line.get("method") != "POST" or line.get("url") != BATCH_ENDPOINT:
                errors.append(_line_error("invalid_url", f"method must be POST and url {BATCH_ENDPOINT}", number))
            elif not isinstance(line.get("body"), dict):
                errors.append(_line_error("invalid_body", "body must be a JSON object", number))
            else:
                seen.add(custom_id)
                finish = self._delay * (0.5 + 0.5 * self._rng.random())
                batch.lines.append(_Line(custom_id, line["body"], finish))
        if not batch.lines and not errors:
            errors.append(_line_error("empty_file", "the input file has no requests", None))
        return errors

    def _submitted(self, custom_id: str) -> None:
        self._counts["lines_submitted"] += 1
        if self._lines.get(custom_id) in (_PENDING, _DONE):
            self._counts["duplicate_lines"] += 1
        self._lines[custom_id] = _PENDING

    # --- the lifecycle, advanced when read ----------------------------------------------------------------

    def _advance(self, batch: _Batch) -> None:
        if batch.ended_at is not None:
            return
        age = self._loop.time() - batch.created
        stop, ending = None, None
        if batch.cancel_requested is not None:
            stop, ending = batch.cancel_requested, "cancelled"
        elif self._expire is not None and age >= self._expire:
            stop, ending = self._expire, "expired"
        cutoff = age if stop is None else stop
        for line in batch.lines:
            if line.outcome is None and line.finish_s <= cutoff:
                self._settle(line, "failed" if self._fails() else "ok")
        if stop is None and all(line.outcome is not None for line in batch.lines):
            ending = "completed"
        if ending is None:
            return
        for line in batch.lines:
            if line.outcome is None:
                self._settle(line, ending)
        batch.status, batch.ended_at = ending, self._loop.time()
        self._counts[f"batches_{ending}"] += 1
        self._write_results(batch)

    def _fails(self) -> bool:
        return self._fail_rate > 0 and (self._fail_rate >= 1.0 or self._rng.random() < self._fail_rate)

    def _settle(self, line: _Line, outcome: str) -> None:
        line.outcome = outcome
        self._lines[line.custom_id] = _DONE if outcome == "ok" else _FAILED
        self._counts[{"ok": "lines_completed"}.get(outcome, f"lines_{outcome}")] += 1

    def _write_results(self, batch: _Batch) -> None:
        out: list[bytes] = []
        err: list[bytes] = []
        for line in batch.lines:
            request_id = f"req_sim{next(self._ids)}"
            entry: dict[str, Any] = {"id": f"batch_req_sim{next(self._ids)}", "custom_id": line.custom_id}
            if line.outcome == "ok":
                reply, prompt, completion = self._render(line.body)
                self._counts["prompt_tokens"] += prompt
                self._counts["completion_tokens"] += completion
                entry.update(response={"status_code": 200, "request_id": request_id, "body": reply}, error=None)
                out.append(orjson.dumps(entry))
            elif line.outcome == "failed":
                message = "The server had an error while processing your request. Sorry about that!"
                body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
                entry.update(response={"status_code": 500, "request_id": request_id, "body": body}, error=None)
                err.append(orjson.dumps(entry))
            else:
                code = f"batch_{line.outcome}"
                message = f"This request could not be executed before the batch was {line.outcome}."
                entry.update(response=None, error={"code": code, "message": message})
                err.append(orjson.dumps(entry))
        if out:
            batch.output_file_id = self._store_result(b"\n".join(out) + b"\n", f"{batch.id}_output.jsonl")
        if err:
            batch.error_file_id = self._store_result(b"\n".join(err) + b"\n", f"{batch.id}_error.jsonl")

    def _store_result(self, content: bytes, filename: str) -> str:
        file = _File(f"file-sim{next(self._ids)}", "batch_output", filename, content, self._unix())
        self._files[file.id] = file
        return file.id

    def _document(self, batch: _Batch) -> dict[str, Any]:
        done = sum(line.outcome == "ok" for line in batch.lines)
        failed = sum(line.outcome not in (None, "ok") for line in batch.lines)
        ended = None if batch.ended_at is None else batch.created_at + int(batch.ended_at - batch.created)
        status = batch.status
        if batch.ended_at is None and batch.cancel_requested is not None:
            status = "cancelling"
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": BATCH_ENDPOINT,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "in_progress_at": batch.created_at,
            "expires_at": batch.created_at + 24 * 3600,
            "completed_at": ended if status == "completed" else None,
            "expired_at": ended if status == "expired" else None,
            "cancelled_at": ended if status == "cancelled" else None,
            "failed_at": ended if status == "failed" else None,
            "request_counts": {"total": len(batch.lines), "completed": done, "failed": failed},
            "metadata": batch.metadata,
        }

    def _unix(self) -> int:
        return int(time.time())


def _line_error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _json(document: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(document), headers=_JSON_HEADERS)


def _error(status: int, message: str, param: str | None, *, status_type: str = "invalid_request_error") -> web.Response:
    error = {"error": {"message": message, "type": status_type, "param": param, "code": None}}
    return web.Response(status=status, body=orjson.dumps(error), headers=_JSON_HEADERS)
