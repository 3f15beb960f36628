"""The EzStems API, endpoint by endpoint, on stemkit's hosted transport (sync and async).

:class:`EzStemsClient` is also where key management lives, outside the Separator protocol::

    with EzStemsClient() as client:            # key from EZSTEMS_API_KEY, base URL from EZSTEMS_BASE_URL
        for key in client.list_keys(): ...     # masked keys, activity, rate limit, call counts
        new = client.generate_key()            # new.api_key is a SecretStr: .get_secret_value() to store it
        client.deactivate_key()                # the key this client uses stops working

Errors are stemkit errors: 401 -> AuthenticationError; 403, which EzStems uses for rate limiting, is retried
with backoff and then raised as RateLimitError; a file too large or of an unsupported type for the plan ->
ProviderLimitError (a fallback chain moves on); an unknown processing id -> JobExpiredError; 5xx, timeouts and
cut connections are retried and then raised as ProviderUnavailableError. The service's ``error`` and
``message`` are in every message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from stemkit.errors import (
    AuthenticationError,
    ConfigError,
    JobExpiredError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    RateLimitError,
)
from stemkit.hosted import AsyncHostedTransport, ErrorContext, HostedTransport, RetryPolicy, Secret
from stemkit.hosted.transport import TransferProgress
from stemkit_ezstems._models import ApiKeyInfo, ErrorBody, GeneratedKey, StatusData, UploadData, envelope_data
from stemkit_ezstems._service import DEFAULT_BASE_URL

__all__ = ["ENV_API_KEY", "ENV_BASE_URL", "AsyncEzStemsClient", "EzStemsClient", "default_retry_policy"]

ENV_API_KEY = "EZSTEMS_API_KEY"
ENV_BASE_URL = "EZSTEMS_BASE_URL"
PROVIDER = "ezstems"
_LIMIT_ERRORS = ("file too large", "unsupported file type")
M = TypeVar("M", bound=BaseModel)


def default_retry_policy() -> RetryPolicy:
    """The transport's policy, with 403 (EzStems' rate-limit answer) retried and safe to replay."""
    base = RetryPolicy()
    return RetryPolicy(
        max_attempts=base.max_attempts,
        backoff_initial=base.backoff_initial,
        backoff_max=base.backoff_max,
        jitter=base.jitter,
        max_retry_after=base.max_retry_after,
        retry_statuses=base.retry_statuses | {403},
        refused_statuses=base.refused_statuses | {403},
    )


def map_error(ctx: ErrorContext) -> ProviderError | None:
    """EzStems' documented statuses, with the service's own ``error``/``message`` in the text."""
    body = ErrorBody.model_validate(ctx.body) if isinstance(ctx.body, dict) else ErrorBody()
    said = body.text(ctx.text.strip()[:200] or f"HTTP {ctx.status_code}")
    where = f"{ctx.method} {ctx.url}"
    common = ctx.common()
    common["code"] = body.error
    endpoint = ctx.url.rsplit("/", 1)[-1]
    if ctx.status_code == 401:
        return AuthenticationError(
            f"{where} was refused: {said}. Set {ENV_API_KEY} (or pass api_key=) to an active EzStems API key",
            **common,
        )
    if ctx.status_code == 403:
        rl = ctx.rate_limit
        return RateLimitError(
            f"{where} was refused: {said}. EzStems rate-limits with HTTP 403; wait and try again, or raise "
            "the key's rate limit",
            retry_after=rl.retry_after,
            limit=rl.limit,
            remaining=rl.remaining,
            reset=rl.reset,
            **common,
        )
    if ctx.status_code == 400 and any(s in said.lower() for s in _LIMIT_ERRORS):
        return ProviderLimitError(
            f"{where} was refused: {said}. Use a smaller MP3/WAV/M4A file, a larger plan (plan=), or another provider",
            **common,
        )
    if ctx.status_code == 404 and endpoint in ("status.php", "download.php"):
        return JobExpiredError(f"{where}: {said}. The job is gone at EzStems; submit it again", **common)
    if ctx.status_code in (404, 405):
        return ProtocolError(
            f"{where} answered {ctx.status_code}: {said}. Check the base URL ({ENV_BASE_URL}); it should end "
            "in /api/v1",
            **common,
        )
    if ctx.status_code < 500:
        return ProviderError(f"{where} was refused: {said}", **common)
    return None  # 5xx: the transport's default (ProviderUnavailableError) with the service's message


def _resolve(api_key: str | Secret | None, base_url: str | None) -> tuple[Secret | None, str]:
    key = api_key if isinstance(api_key, Secret) else None
    if key is None:
        raw = api_key if isinstance(api_key, str) else os.environ.get(ENV_API_KEY, "")
        key = Secret(raw.strip()) if raw and raw.strip() else None
    url = (base_url or os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL).rstrip("/")
    return key, url


def _require_key(key: Secret | None) -> Secret:
    if not key:
        raise ConfigError(
            f"ezstems: no API key; set {ENV_API_KEY} or pass api_key= (for the emulator: "
            "`stemkit emulate ezstems` prints its base URL, its default key is ezstems_test_emulator)"
        )
    return key


def _data(body: Any, model: type[M], what: str) -> M:
    data = envelope_data(body)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(
            f"EzStems answered {what} with an unexpected body ({exc.error_count()} problem(s), first: "
            f"{exc.errors()[0]['msg']}); check the base URL ({ENV_BASE_URL}) or update stemkit-ezstems",
            provider=PROVIDER,
        ) from None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"EzStems answered {response.request.url.path} with a body that is not JSON "
            f"({response.headers.get('content-type', 'no content type')}); "
            f"check the base URL ({ENV_BASE_URL})",
            provider=PROVIDER,
            status_code=response.status_code,
        ) from None


def _keys(body: Any) -> list[ApiKeyInfo]:
    data = envelope_data(body)
    if not isinstance(data, list):
        raise ProtocolError("EzStems answered keys.php without a list of keys", provider=PROVIDER)
    return [_data({"success": True, "data": row}, ApiKeyInfo, "keys.php") for row in data]


def _deactivated(body: Any) -> str:
    if not (isinstance(body, dict) and body.get("success") is True):
        raise ProtocolError("EzStems answered the key deactivation without success", provider=PROVIDER)
    return str(body.get("message") or "API key deactivated")


def _upload_fields(stems: int, cutoff: str | None, output: str | None) -> dict[str, str]:
    fields = {"stems": str(stems)}
    if cutoff is not None:
        fields["cutoff"] = cutoff
    if output is not None:
        fields["output"] = output
    return fields


class _ClientBase:
    def __init__(
        self,
        api_key: str | Secret | None,
        base_url: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> None:
        key, url = _resolve(api_key, base_url)
        self._settings: dict[str, Any] = {
            "provider": PROVIDER,
            "base_url": url,
            "api_key": _require_key(key),
            "error_mapper": map_error,
            "retry": retry or default_retry_policy(),
            "timeout": timeout,
        }

    @property
    def base_url(self) -> str:
        return str(self._settings["base_url"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=***)"


class EzStemsClient(_ClientBase):
    """Synchronous EzStems client; ``api_key``/``base_url`` default to the EZSTEMS_* environment variables."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, timeout)
        self.transport = HostedTransport(**self._settings, **dict(transport_options or {}))

    def upload(
        self,
        path: str | os.PathLike[str],
        stems: int,
        *,
        cutoff: str | None = None,
        output: str | None = None,
        content_type: str | None = None,
        progress: TransferProgress | None = None,
    ) -> UploadData:
        """``POST upload.php``: the file streams from disk as multipart; returns the queued job."""
        response = self.transport.upload_multipart(
            "upload.php",
            path,
            data=_upload_fields(stems, cutoff, output),
            content_type=content_type,
            progress=progress,
        )
        return _data(_json(response), UploadData, "upload.php")

    def status(self, job_id: str) -> StatusData:
        """``GET status.php?id=``."""
        body = self.transport.request_json("GET", "status.php", params={"id": job_id})
        return _data(body, StatusData, "status.php")

    def download(self, job_id: str, dest: str | os.PathLike[str], *, progress: TransferProgress | None = None) -> Path:
        """``GET download.php?id=``: the ZIP streams to ``dest`` through a temporary file."""
        return self.transport.download("download.php", dest, params={"id": job_id}, progress=progress)

    def list_keys(self) -> list[ApiKeyInfo]:
        """``GET keys.php``: the account's keys (masked by the service)."""
        return _keys(self.transport.request_json("GET", "keys.php"))

    def deactivate_key(self) -> str:
        """``DELETE keys.php``: deactivates the key this client uses; returns the service's message."""
        return _deactivated(self.transport.request_json("DELETE", "keys.php"))

    def generate_key(self) -> GeneratedKey:
        """``POST keys.php``: a new key, shown once (``api_key`` is a SecretStr)."""
        body = self.transport.request_json("POST", "keys.php")
        return _data(body, GeneratedKey, "keys.php")

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncEzStemsClient(_ClientBase):
    """The async twin of :class:`EzStemsClient`."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, timeout)
        self.transport = AsyncHostedTransport(**self._settings, **dict(transport_options or {}))

    async def upload(
        self,
        path: str | os.PathLike[str],
        stems: int,
        *,
        cutoff: str | None = None,
        output: str | None = None,
        content_type: str | None = None,
        progress: TransferProgress | None = None,
    ) -> UploadData:
        response = await self.transport.upload_multipart(
            "upload.php",
            path,
            data=_upload_fields(stems, cutoff, output),
            content_type=content_type,
            progress=progress,
        )
        return _data(_json(response), UploadData, "upload.php")

    async def status(self, job_id: str) -> StatusData:
        body = await self.transport.request_json("GET", "status.php", params={"id": job_id})
        return _data(body, StatusData, "status.php")

    async def download(
        self, job_id: str, dest: str | os.PathLike[str], *, progress: TransferProgress | None = None
    ) -> Path:
        return await self.transport.download("download.php", dest, params={"id": job_id}, progress=progress)

    async def list_keys(self) -> list[ApiKeyInfo]:
        return _keys(await self.transport.request_json("GET", "keys.php"))

    async def deactivate_key(self) -> str:
        return _deactivated(await self.transport.request_json("DELETE", "keys.php"))

    async def generate_key(self) -> GeneratedKey:
        return _data(await self.transport.request_json("POST", "keys.php"), GeneratedKey, "keys.php")

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
