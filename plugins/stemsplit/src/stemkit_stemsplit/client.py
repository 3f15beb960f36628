"""StemSplit's API as a client: every documented endpoint plus ``/youtube-jobs``, sync and async.

The separator uses it; it is public for what the Separator protocol does not cover — balance, job lists,
webhook registration::

    with StemSplitClient() as client:              # STEMSPLIT_API_KEY, STEMSPLIT_BASE_URL
        print(client.balance().balance_seconds)
        for job in client.iter_jobs(status="COMPLETED"):
            ...
        hook = client.create_webhook("https://example.com/hook")   # hook.secret: save it now
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from stemkit.errors import ConfigError
from stemkit.hosted import (
    AsyncHostedTransport,
    HostedTransport,
    RateLimitInfo,
    RetryPolicy,
    Secret,
    TransferProgress,
)
from stemkit_stemsplit._errors import map_error
from stemkit_stemsplit._wire import Balance, Job, JobList, UploadTicket, Webhook

__all__ = ["DEFAULT_BASE_URL", "AsyncStemSplitClient", "StemSplitClient", "resolve_settings"]

DEFAULT_BASE_URL = "https://stemsplit.io/api/v1"
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


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _MIME.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def resolve_settings(api_key: str | Secret | None, base_url: str | None) -> tuple[Secret, str]:
    """The key (keyword, else ``STEMSPLIT_API_KEY``) and base URL (else ``STEMSPLIT_BASE_URL``, else prod)."""
    key = api_key if api_key is not None else os.environ.get("STEMSPLIT_API_KEY")
    if not key:
        raise ConfigError(
            "stemsplit: no API key; set STEMSPLIT_API_KEY or pass api_key= "
            "(get one at https://stemsplit.io/app/settings/api)"
        )
    url = base_url or os.environ.get("STEMSPLIT_BASE_URL") or DEFAULT_BASE_URL
    return (key if isinstance(key, Secret) else Secret(key)), url


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


class _ClientBase:
    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)
        self._settings: dict[str, Any] = {
            "provider": "stemsplit",
            "base_url": url,
            "api_key": key,
            "error_mapper": map_error,
            "retry": retry,
            "timeout": timeout,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._settings['base_url']!r}, api_key=***)"


class StemSplitClient(_ClientBase):
    """Synchronous StemSplit client (one connection pool; close it, or use ``with``)."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url=base_url, retry=retry, timeout=timeout)
        self.transport = HostedTransport(http_transport=http_transport, **self._settings)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        return self.transport.last_rate_limit

    # uploads
    def create_upload(self, filename: str, content_type: str | None = None) -> UploadTicket:
        """``POST /upload``: a presigned URL valid for 15 minutes (safe to repeat: it only mints a URL)."""
        body = {"filename": filename, "contentType": content_type or content_type_for(filename)}
        data = self.transport.request_json("POST", "/upload", json=body, replay_safe=True)
        return UploadTicket.model_validate(data)

    def upload_file(
        self, path: str | os.PathLike[str], *, filename: str | None = None, progress: TransferProgress | None = None
    ) -> UploadTicket:
        """Presign, then stream the file from disk with a PUT (no Authorization header goes to storage)."""
        path = Path(path)
        name = filename or path.name
        ticket = self.create_upload(name)
        ctype = ticket.content_type or content_type_for(name)
        self.transport.upload("PUT", ticket.upload_url, path, content_type=ctype, progress=progress)
        return ticket

    # jobs
    def create_job(
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
            upload_key=upload_key,
            source_url=source_url,
            output_type=output_type,
            quality=quality,
            output_format=output_format,
            file_name=file_name,
            metadata=metadata,
        )
        data = self.transport.request_json("POST", "/jobs", json=body, idempotency_key=idempotency_key)
        return Job.model_validate(data)

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self.transport.request_json("GET", f"/jobs/{job_id}"))

    def list_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobList:
        params = _list_params(limit, offset, status)
        return JobList.model_validate(self.transport.request_json("GET", "/jobs", params=params))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job, walking the pages."""
        offset = 0
        while True:
            page = self.list_jobs(limit=page_size, offset=offset, status=status)
            yield from page.jobs
            if not page.pagination.has_more or not page.jobs:
                return
            offset += len(page.jobs)

    # youtube
    def create_youtube_job(
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
        data = self.transport.request_json("POST", "/youtube-jobs", json=body, idempotency_key=idempotency_key)
        return Job.model_validate(data)

    def get_youtube_job(self, job_id: str) -> Job:
        return Job.model_validate(self.transport.request_json("GET", f"/youtube-jobs/{job_id}"))

    def list_youtube_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobList:
        params = _list_params(limit, offset, status)
        return JobList.model_validate(self.transport.request_json("GET", "/youtube-jobs", params=params))

    # account
    def balance(self) -> Balance:
        """``GET /balance``: remaining credits, in seconds of audio."""
        return Balance.model_validate(self.transport.request_json("GET", "/balance"))

    # webhooks
    def create_webhook(self, url: str, events: Sequence[str] | None = None) -> Webhook:
        """``POST /webhooks``; the answer's ``secret`` is shown only this once."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = list(events)
        return Webhook.model_validate(self.transport.request_json("POST", "/webhooks", json=body, idempotency_key=True))

    def list_webhooks(self) -> list[Webhook]:
        data = self.transport.request_json("GET", "/webhooks")
        return [Webhook.model_validate(w) for w in data.get("webhooks", [])]

    def delete_webhook(self, webhook_id: str) -> bool:
        data = self.transport.request_json("DELETE", f"/webhooks/{webhook_id}")
        return bool(data.get("deleted", True)) if isinstance(data, dict) else True

    # files
    def download(self, url: str, dest: str | os.PathLike[str], *, progress: TransferProgress | None = None) -> Path:
        """Stream a presigned output URL to ``dest`` (atomically; no Authorization header is sent)."""
        return self.transport.download(url, dest, progress=progress)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStemSplitClient(_ClientBase):
    """The async twin of :class:`StemSplitClient`; same methods, awaited."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url=base_url, retry=retry, timeout=timeout)
        self.transport = AsyncHostedTransport(http_transport=http_transport, **self._settings)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        return self.transport.last_rate_limit

    async def create_upload(self, filename: str, content_type: str | None = None) -> UploadTicket:
        body = {"filename": filename, "contentType": content_type or content_type_for(filename)}
        data = await self.transport.request_json("POST", "/upload", json=body, replay_safe=True)
        return UploadTicket.model_validate(data)

    async def upload_file(
        self, path: str | os.PathLike[str], *, filename: str | None = None, progress: TransferProgress | None = None
    ) -> UploadTicket:
        path = Path(path)
        name = filename or path.name
        ticket = await self.create_upload(name)
        ctype = ticket.content_type or content_type_for(name)
        await self.transport.upload("PUT", ticket.upload_url, path, content_type=ctype, progress=progress)
        return ticket

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
        body = _job_body(
            upload_key=upload_key,
            source_url=source_url,
            output_type=output_type,
            quality=quality,
            output_format=output_format,
            file_name=file_name,
            metadata=metadata,
        )
        data = await self.transport.request_json("POST", "/jobs", json=body, idempotency_key=idempotency_key)
        return Job.model_validate(data)

    async def get_job(self, job_id: str) -> Job:
        return Job.model_validate(await self.transport.request_json("GET", f"/jobs/{job_id}"))

    async def list_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobList:
        params = _list_params(limit, offset, status)
        return JobList.model_validate(await self.transport.request_json("GET", "/jobs", params=params))

    async def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> AsyncIterator[Job]:
        offset = 0
        while True:
            page = await self.list_jobs(limit=page_size, offset=offset, status=status)
            for job in page.jobs:
                yield job
            if not page.pagination.has_more or not page.jobs:
                return
            offset += len(page.jobs)

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
        body = _youtube_body(url, output_type, quality, output_format, metadata)
        data = await self.transport.request_json("POST", "/youtube-jobs", json=body, idempotency_key=idempotency_key)
        return Job.model_validate(data)

    async def get_youtube_job(self, job_id: str) -> Job:
        return Job.model_validate(await self.transport.request_json("GET", f"/youtube-jobs/{job_id}"))

    async def balance(self) -> Balance:
        return Balance.model_validate(await self.transport.request_json("GET", "/balance"))

    async def create_webhook(self, url: str, events: Sequence[str] | None = None) -> Webhook:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = list(events)
        data = await self.transport.request_json("POST", "/webhooks", json=body, idempotency_key=True)
        return Webhook.model_validate(data)

    async def list_webhooks(self) -> list[Webhook]:
        data = await self.transport.request_json("GET", "/webhooks")
        return [Webhook.model_validate(w) for w in data.get("webhooks", [])]

    async def delete_webhook(self, webhook_id: str) -> bool:
        data = await self.transport.request_json("DELETE", f"/webhooks/{webhook_id}")
        return bool(data.get("deleted", True)) if isinstance(data, dict) else True

    async def download(
        self, url: str, dest: str | os.PathLike[str], *, progress: TransferProgress | None = None
    ) -> Path:
        return await self.transport.download(url, dest, progress=progress)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
