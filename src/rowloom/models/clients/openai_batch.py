"""`OpenAIBatchApi`: OpenAI's batch API on one provider — upload a JSONL of chat completions, create the batch, read
its status, fetch its results line by line, cancel it.

Owns the wire format of batch lines and results: each result line becomes the `ChatResponse` or `ProviderError`
that an online reply with the same status and body would be (`classify_chat_response`), keyed by its custom_id;
a line the batch never ran (expired, cancelled, or missing from both files) is `NotRun`, which a later batch may
resubmit. Must not decide when to flush, poll or resubmit: that is the batch executor's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from rowloom.models.clients.openai import (
    OpenAIClient,
    classify_chat_response,
    classify_status,
    clip,
    decode_ok_body,
)
from rowloom.models.types import ChatRequest, ChatResponse, Outcome, ProviderError, RateLimitInfo, ServerError

BATCH_ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class NotRun(ProviderError):
    """The batch ended (expired, cancelled) before this line ran, or returned no result for it: nothing was
    generated, so it may be submitted again."""

    outcome = Outcome.NOT_RUN


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: `custom_id` maps its result back to the cell that asked."""

    custom_id: str
    request: ChatRequest


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What `GET /v1/batches/{id}` said."""

    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        """Whether the batch will change no more (its result files, if any, are final)."""
        return self.status in TERMINAL


class OpenAIBatchApi:
    """The batch endpoints of the provider `client` talks to, over its session, headers and credentials."""

    def __init__(self, client: OpenAIClient):
        self._client = client
        base = client.provider.base_url
        self._files_url = f"{base}/files"
        self._batches_url = f"{base}/batches"

    def provider_record(self) -> dict[str, Any]:
        """The provider's settings a later process needs to reach these batches (to cancel them), without
        secrets: the key's variable or file is named, never read; extra headers are left out."""
        return self._client.provider.model_dump(
            include={"name", "type", "base_url", "api_key_env", "api_key_file", "allow_insecure", "timeout_s"}
        )

    def body_bytes(self, request: ChatRequest) -> bytes:
        """The request body a batch line carries for `request` (what identifies the request, without its id)."""
        return orjson.dumps(self._client.chat_payload(request))

    def line_bytes(self, line: BatchLine) -> bytes:
        """The JSONL line that asks for `line.request` (what counts against a batch's byte limit)."""
        body = self._client.chat_payload(line.request)
        return orjson.dumps({"custom_id": line.custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": body})

    async def upload(self, lines: Sequence[BatchLine], *, filename: str = "rowloom-batch.jsonl") -> str:
        """Upload the lines as one input file; its id."""
        content = b"".join(self.line_bytes(line) + b"\n" for line in lines)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=filename, content_type="application/jsonl")
        data = self._ok(*await self._client._post_form(self._files_url, form))
        return _text(data, "id", "file upload")

    async def create(
        self, input_file_id: str, *, metadata: Mapping[str, str] | None = None, completion_window: str = "24h"
    ) -> BatchStatus:
        """Create a batch of the uploaded file; its first status (the id is what a resume polls)."""
        payload: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": BATCH_ENDPOINT,
            "completion_window": completion_window,
        }
        if metadata:
            payload["metadata"] = dict(metadata)
        return _status(self._ok(*await self._client._post(self._batches_url, payload)))

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's status now."""
        return _status(self._ok(*await self._client._get(f"{self._batches_url}/{batch_id}")))

    async def find(self, metadata_key: str, value: str, *, pages: int = 10) -> BatchStatus | None:
        """The newest batch whose metadata has `metadata_key: value`, looking through the `pages` × 100 newest
        (how a resume finds a batch whose creation it asked for but never heard the answer to)."""
        after: str | None = None
        for _ in range(pages):
            query = "?limit=100" + (f"&after={after}" if after else "")
            data = self._ok(*await self._client._get(f"{self._batches_url}{query}"))
            entries = data.get("data") if isinstance(data.get("data"), list) else []
            for entry in entries:
                metadata = entry.get("metadata") if isinstance(entry, dict) else None
                if isinstance(metadata, dict) and metadata.get(metadata_key) == value:
                    return _status(entry)
            if not data.get("has_more") or not entries:
                return None
            after = _text(data, "last_id", "batch list")
        return None

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to cancel the batch; its status after the request (`cancelling` or terminal)."""
        return _status(self._ok(*await self._client._post(f"{self._batches_url}/{batch_id}/cancel", {})))

    async def results(self, status: BatchStatus, custom_ids: Sequence[str]) -> dict[str, ChatResponse | ProviderError]:
        """Every line of a terminal batch: its reply, the error it came back with, or `NotRun`."""
        if not status.terminal:
            raise ValueError(f"batch {status.id} is {status.status}: its results are not final")
        out: dict[str, ChatResponse | ProviderError] = {}
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id is not None:
                for custom_id, result in self._lines(await self._content(file_id, len(custom_ids))):
                    out[custom_id] = result
        for custom_id in custom_ids:
            if custom_id not in out:
                why = "; ".join(status.errors) or f"the batch ended {status.status} without a result for it"
                out[custom_id] = NotRun(f"batch {status.id}: {why}")
        return out

    async def _content(self, file_id: str, lines: int) -> bytes:
        cap = self._client.provider.max_reply_bytes * max(1, lines)
        status, headers, body, latency = await self._client._get(f"{self._files_url}/{file_id}/content", max_bytes=cap)
        error = classify_status(status, headers, body, latency, secrets=self._client._secrets)
        if error is not None:
            raise self._client._scrub(error)
        return body

    def _lines(self, content: bytes) -> list[tuple[str, ChatResponse | ProviderError]]:
        secrets = self._client._secrets
        out: list[tuple[str, ChatResponse | ProviderError]] = []
        for raw in content.splitlines():
            if not raw.strip():
                continue
            try:
                entry = orjson.loads(raw)
                custom_id = entry["custom_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # a line that names no cell answers none; its cell comes back NotRun
            response, error = entry.get("response"), entry.get("error")
            if isinstance(response, dict) and isinstance(response.get("status_code"), int):
                body = orjson.dumps(response.get("body"))
                result = classify_chat_response(response["status_code"], {}, body, 0.0, secrets=secrets)
            else:
                code = error.get("code") if isinstance(error, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                result = NotRun(f"{code or 'error'}: {clip(str(message or 'no message'), secrets=secrets)}")
            out.append((str(custom_id), result))
        return out

    def _ok(self, status: int, headers: Any, body: bytes, latency: float) -> dict[str, Any]:
        secrets = self._client._secrets
        error = classify_status(status, headers, body, latency, secrets=secrets)
        data = error if error is not None else decode_ok_body(status, body, RateLimitInfo(), latency, secrets)
        if isinstance(data, ProviderError):
            raise self._client._scrub(data)
        return data


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ServerError(f"malformed {what} reply: no {key!r}")
    return value


def _status(data: Mapping[str, Any]) -> BatchStatus:
    counts = data.get("request_counts") if isinstance(data.get("request_counts"), dict) else {}
    errors = data.get("errors")
    entries = errors.get("data") if isinstance(errors, dict) else None
    messages = tuple(
        (f"line {e['line']}: " if e.get("line") else "") + f"{e.get('code')}: {e.get('message')}"
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict)
    )
    return BatchStatus(
        id=_text(data, "id", "batch"),
        status=_text(data, "status", "batch"),
        total=int(counts.get("total") or 0),
        completed=int(counts.get("completed") or 0),
        failed=int(counts.get("failed") or 0),
        output_file_id=data.get("output_file_id") or None,
        error_file_id=data.get("error_file_id") or None,
        errors=messages,
    )
