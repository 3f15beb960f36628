"""StemSplit's API as a client: every documented endpoint plus ``/youtube-jobs``.

:class:`AsyncStemSplitClient` is the implementation; :class:`StemSplitClient` is its blocking face (the same
methods, derived one line each). The separator uses the async client; both are public for what the Separator
protocol does not cover — balance, job lists, webhook registration::

    with StemSplitClient() as client:              # STEMSPLIT_API_KEY, STEMSPLIT_BASE_URL
        print(client.balance().balance_seconds)
        for job in client.iter_jobs(status="COMPLETED"):
            ...
        hook = client.create_webhook("https://example.com/hook")   # hook.secret: save it now
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from stemkit._portal import SyncFacade, blocking, blocking_iter
from stemkit.errors import ConfigError
from stemkit.hosted import (
    AsyncHostedTransport,
    HostedTransport,
    RateLimitInfo,
    RetryPolicy,
    Secret,
    TransferProgress,
    parse_answer,
    read_key,
)
from stemkit_stemsplit._errors import map_error
from stemkit_stemsplit._wire import DEFAULT_BASE_URL, Balance, Job, JobList, UploadTicket, Webhook

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "AsyncStemSplitClient",
    "StemSplitClient",
    "resolve_settings",
]

ENV_API_KEY = "STEMSPLIT_API_KEY"
ENV_BASE_URL = "STEMSPLIT_BASE_URL"
PROVIDER = "stemsplit"
NO_KEY = (
    f"stemsplit: no API key; set {ENV_API_KEY} or pass api_key= (for the emulator, `stemkit emulate stemsplit` "
    "prints the key it accepts)"
)
_MIME = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".webm": "audio/webm",
}
M = TypeVar("M", bound=BaseModel)


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _MIME.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def resolve_settings(api_key: str | Secret | None, base_url: str | None) -> tuple[Secret, str]:
    """The key (keyword, else ``STEMSPLIT_API_KEY``) and base URL (else ``STEMSPLIT_BASE_URL``, else prod)."""
    key = read_key(api_key, env=ENV_API_KEY, provider=PROVIDER)
    if key is None:
        raise ConfigError(NO_KEY)
    url = base_url or os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
    return key, url


def _job_body(
    *,
    upload_key: str | None,
    source_url: str | None,
    output_type: str | None,
    quality: str | None,
    output_format: str | None,
    file_name: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if (upload_key is None) == (source_url is None):
        raise ConfigError("stemsplit: create_job needs exactly one of upload_key= or source_url=")
    body: dict[str, Any] = {"uploadKey": upload_key} if upload_key is not None else {"sourceUrl": source_url}
    for key, value in (
        ("fileName", file_name),
        ("outputType", output_type),
        ("quality", quality),
        ("outputFormat", output_format),
        ("metadata", dict(metadata) if metadata is not None else None),
    ):
        if value is not None:
            body[key] = value
    return body


def _youtube_body(
    url: str, output_type: str | None, quality: str | None, output_format: str | None, metadata: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"youtubeUrl": url}
    # The SDK sends outputType only when asked; the service's default is vocals + instrumental.
    for key, value in (
        ("outputType", output_type if output_type not in (None, "BOTH") else None),
        ("quality", quality),
        ("outputFormat", output_format),
        ("metadata", dict(metadata) if metadata is not None else None),
    ):
        if value is not None:
            body[key] = value
    return body


def _list_params(limit: int, offset: int, status: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status is not None:
        params["status"] = status
    return params


class AsyncStemSplitClient:
    """StemSplit's API, async (one connection pool; close it, or use ``async with``)."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        **transport_options: Any,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)
        self.transport = AsyncHostedTransport(
            provider=PROVIDER, base_url=url, api_key=key, error_mapper=map_error, retry=retry, timeout=timeout,
            http_transport=http_transport, **transport_options,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=***)"

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        return self.transport.last_rate_limit

    async def _get(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        data = await self.transport.request_json(method, path, **kwargs)
        return parse_answer(model, data, provider=PROVIDER, what=f"{method} {path}")

    # uploads
    async def create_upload(self, filename: str, content_type: str | None = None) -> UploadTicket:
        """``POST /upload``: a presigned URL valid for 15 minutes (safe to repeat: it only mints a URL)."""
        body = {"filename": filename, "contentType": content_type or content_type_for(filename)}
        return await self._get(UploadTicket, "POST", "/upload", json=body, replay_safe=True)

    async def upload_file(
        self, path: str | os.PathLike[str], *, filename: str | None = None, progress: TransferProgress | None = None
    ) -> UploadTicket:
        """Presign, then stream the file from disk with a PUT (no Authorization header goes to storage)."""
        path = Path(path)
        name = filename or path.name
        ticket = await self.create_upload(name)
        ctype = ticket.content_type or content_type_for(name)
        await self.transport.upload("PUT", ticket.upload_url, path, content_type=ctype, progress=progress)
        return ticket

    # jobs
    async def create_job(
        self,
        *,
        upload_key: str | None = None,
        source_url: str | None = None,
        output_type: str | None = None,
        quality: str | None = None,
        output_format: str | None = None,
        file_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | bool = True,
    ) -> Job:
        """``POST /jobs``; the Idempotency-Key (generated by default) is the same on every retry."""
        body = _job_body(
            upload_key=upload_key, source_url=source_url, output_type=output_type, quality=quality,
            output_format=output_format, file_name=file_name, metadata=metadata,
        )  # fmt: skip
        return await self._get(Job, "POST", "/jobs", json=body, idempotency_key=idempotency_key)

    async def get_job(self, job_id: str) -> Job:
        return await self._get(Job, "GET", f"/jobs/{job_id}")

    async def list_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobList:
        return await self._get(JobList, "GET", "/jobs", params=_list_params(limit, offset, status))

    async def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Job]:
        """Every job, walking the pages."""
        offset = 0
        while True:
            page = await self.list_jobs(limit=page_size, offset=offset, status=status)
            for job in page.jobs:
                yield job
            if not page.pagination.has_more or not page.jobs:
                return
            offset += len(page.jobs)

    # youtube
    async def create_youtube_job(
        self,
        url: str,
        *,
        output_type: str | None = None,
        quality: str | None = None,
        output_format: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | bool = True,
    ) -> Job:
        """``POST /youtube-jobs``: separation straight from a YouTube URL (outputs add ``fullAudio``)."""
        body = _youtube_body(url, output_type, quality, output_format, metadata)
        return await self._get(Job, "POST", "/youtube-jobs", json=body, idempotency_key=idempotency_key)

    async def get_youtube_job(self, job_id: str) -> Job:
        return await self._get(Job, "GET", f"/youtube-jobs/{job_id}")

    async def list_youtube_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobList:
        return await self._get(JobList, "GET", "/youtube-jobs", params=_list_params(limit, offset, status))

    # account
    async def balance(self) -> Balance:
        """``GET /balance``: remaining credits, in seconds of audio."""
        return await self._get(Balance, "GET", "/balance")

    # webhooks
    async def create_webhook(self, url: str, events: Sequence[str] | None = None) -> Webhook:
        """``POST /webhooks``; the answer's ``secret`` is shown only this once."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = list(events)
        return await self._get(Webhook, "POST", "/webhooks", json=body, idempotency_key=True)

    async def list_webhooks(self) -> list[Webhook]:
        data = await self.transport.request_json("GET", "/webhooks")
        hooks = data.get("webhooks", []) if isinstance(data, dict) else None
        if not isinstance(hooks, list):
            hooks = [None]  # parse_answer names the problem
        return [parse_answer(Webhook, w, provider=PROVIDER, what="GET /webhooks") for w in hooks]

    async def delete_webhook(self, webhook_id: str) -> bool:
        data = await self.transport.request_json("DELETE", f"/webhooks/{webhook_id}")
        return bool(data.get("deleted", True)) if isinstance(data, dict) else True

    # files
    async def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        progress: TransferProgress | None = None,
    ) -> Path:
        """Stream a presigned output URL to ``dest`` (atomically; no Authorization header is sent)."""
        return await self.transport.download(url, Path(dest), max_bytes=max_bytes, progress=progress)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class StemSplitClient(SyncFacade[AsyncStemSplitClient]):
    """Blocking StemSplit client: :class:`AsyncStemSplitClient`'s methods, not awaited (close it, or ``with``)."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        **transport_options: Any,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)  # a missing key fails here, before any thread starts
        super().__init__(
            lambda: AsyncStemSplitClient(
                key, base_url=url, retry=retry, timeout=timeout, http_transport=http_transport, **transport_options
            )
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=***)"

    @property
    def base_url(self) -> str:
        return self.aio.base_url

    @property
    def transport(self) -> HostedTransport:
        """The client's transport, blocking (for requests the client has no method for)."""
        return HostedTransport.view(self, self.aio.transport)

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        return self.aio.last_rate_limit

    create_upload = blocking(AsyncStemSplitClient.create_upload)
    upload_file = blocking(AsyncStemSplitClient.upload_file)
    create_job = blocking(AsyncStemSplitClient.create_job)
    get_job = blocking(AsyncStemSplitClient.get_job)
    list_jobs = blocking(AsyncStemSplitClient.list_jobs)
    iter_jobs = blocking_iter(AsyncStemSplitClient.iter_jobs)
    create_youtube_job = blocking(AsyncStemSplitClient.create_youtube_job)
    get_youtube_job = blocking(AsyncStemSplitClient.get_youtube_job)
    list_youtube_jobs = blocking(AsyncStemSplitClient.list_youtube_jobs)
    balance = blocking(AsyncStemSplitClient.balance)
    create_webhook = blocking(AsyncStemSplitClient.create_webhook)
    list_webhooks = blocking(AsyncStemSplitClient.list_webhooks)
    delete_webhook = blocking(AsyncStemSplitClient.delete_webhook)
    download = blocking(AsyncStemSplitClient.download)
