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
from urllib.parse import urlsplit

from pydantic import BaseModel

from stemkit._portal import SyncFacade, blocking
from stemkit.errors import (
    AuthenticationError,
    ConfigError,
    JobExpiredError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    RateLimitError,
)
from stemkit.hosted import (
    AsyncHostedTransport,
    ErrorContext,
    HostedTransport,
    Limits,
    RetryPolicy,
    Secret,
    TransferProgress,
    parse_answer,
    read_key,
)
from stemkit_ezstems._models import ApiKeyInfo, ErrorBody, GeneratedKey, StatusData, UploadData, envelope_data
from stemkit_ezstems._service import DEFAULT_BASE_URL

__all__ = [
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "AsyncEzStemsClient",
    "EzStemsClient",
    "default_retry_policy",
    "resolve_settings",
]

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
        # The emulator's printout is where a key for a local server comes from; the real service's keys are
        # made on its site (keys.php needs a logged-in user).
        real = urlsplit(ctx.url).hostname == urlsplit(DEFAULT_BASE_URL).hostname
        source = (
            "make one on EzStems' site" if real else "for stemkit's emulator, the key `stemkit emulate ezstems` prints"
        )
        return AuthenticationError(
            f"{where} was refused: {said}; set {ENV_API_KEY} (or pass api_key=) to an active key for this service "
            f"({source})",
            **common,
        )
    if ctx.status_code == 403:
        rl = ctx.rate_limit
        return RateLimitError(
            f"{where} was refused: {said}; EzStems rate-limits with HTTP 403, wait and try again, or raise "
            "the key's rate limit",
            retry_after=rl.retry_after,
            limit=rl.limit,
            remaining=rl.remaining,
            reset=rl.reset,
            **common,
        )
    if ctx.status_code == 400 and any(s in said.lower() for s in _LIMIT_ERRORS):
        return ProviderLimitError(
            f"{where} was refused: {said}; use a smaller MP3/WAV/M4A file, a larger plan (plan=), or another provider",
            **common,
        )
    if ctx.status_code == 404 and endpoint in ("status.php", "download.php"):
        return JobExpiredError(f"{where}: {said}; the job is gone at EzStems, submit it again", **common)
    if ctx.status_code in (404, 405):
        return ProtocolError(
            f"{where} answered {ctx.status_code}: {said}; check the base URL ({ENV_BASE_URL}), it should end "
            "in /api/v1",
            **common,
        )
    if ctx.status_code < 500:
        return ProviderError(f"{where} was refused: {said}", **common)
    return None  # 5xx: the transport's default (ProviderUnavailableError) with the service's message


def resolve_settings(api_key: str | Secret | None, base_url: str | None) -> tuple[Secret, str]:
    """The key (keyword, else ``EZSTEMS_API_KEY``) and base URL (else ``EZSTEMS_BASE_URL``, else production)."""
    key = read_key(api_key, env=ENV_API_KEY, provider=PROVIDER)
    if key is None:
        raise ConfigError(
            f"ezstems: no API key; set {ENV_API_KEY} or pass api_key= (for the emulator, "
            "`stemkit emulate ezstems` prints its base URL and the key it accepts)"
        )
    url = (base_url or os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL).rstrip("/")
    return key, url


def _data(body: Any, model: type[M], what: str) -> M:
    return parse_answer(model, envelope_data(body), provider=PROVIDER, what=what)


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


class AsyncEzStemsClient:
    """EzStems' API, async; ``api_key``/``base_url`` default to the EZSTEMS_* environment variables."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        limits: Limits | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)
        self.transport = AsyncHostedTransport(
            provider=PROVIDER, base_url=url, api_key=key, error_mapper=map_error,
            retry=retry or default_retry_policy(), timeout=timeout, limits=limits, **dict(transport_options or {}),
        )  # fmt: skip

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=***)"

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
        """``POST upload.php``: the file streams from disk as multipart; returns the queued job."""
        reply = await self.transport.upload_multipart(
            "upload.php", Path(path), data=_upload_fields(stems, cutoff, output), content_type=content_type,
            progress=progress,
        )  # fmt: skip
        return _data(reply.json(), UploadData, "upload.php")

    async def status(self, job_id: str) -> StatusData:
        """``GET status.php?id=``."""
        body = await self.transport.request_json("GET", "status.php", params={"id": job_id})
        return _data(body, StatusData, "status.php")

    async def download(
        self,
        job_id: str,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        progress: TransferProgress | None = None,
    ) -> Path:
        """``GET download.php?id=``: the ZIP streams to ``dest`` through a temporary file."""
        return await self.transport.download(
            "download.php", Path(dest), params={"id": job_id}, max_bytes=max_bytes, progress=progress
        )

    async def list_keys(self) -> list[ApiKeyInfo]:
        """``GET keys.php``: the account's keys (masked by the service)."""
        return _keys(await self.transport.request_json("GET", "keys.php"))

    async def deactivate_key(self) -> str:
        """``DELETE keys.php``: deactivates the key this client uses; returns the service's message."""
        return _deactivated(await self.transport.request_json("DELETE", "keys.php"))

    async def generate_key(self) -> GeneratedKey:
        """``POST keys.php``: a new key, shown once (``api_key`` is a SecretStr)."""
        return _data(await self.transport.request_json("POST", "keys.php"), GeneratedKey, "keys.php")

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class EzStemsClient(SyncFacade[AsyncEzStemsClient]):
    """Blocking EzStems client: :class:`AsyncEzStemsClient`'s methods, not awaited (close it, or ``with``)::

        with EzStemsClient() as client:            # key from EZSTEMS_API_KEY, base URL from EZSTEMS_BASE_URL
            for key in client.list_keys(): ...     # masked keys, activity, rate limit, call counts
            new = client.generate_key()            # new.api_key is a SecretStr: .get_secret_value() to store it
            client.deactivate_key()                # the key this client uses stops working
    """

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        limits: Limits | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        key, url = resolve_settings(api_key, base_url)  # a missing key fails here, before any thread starts
        super().__init__(
            lambda: AsyncEzStemsClient(
                key, base_url=url, retry=retry, timeout=timeout, limits=limits, transport_options=transport_options
            )
        )

    @property
    def base_url(self) -> str:
        return self.aio.base_url

    @property
    def transport(self) -> HostedTransport:
        """The client's transport, blocking (for requests the client has no method for)."""
        return HostedTransport.view(self, self.aio.transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=***)"

    upload = blocking(AsyncEzStemsClient.upload)
    status = blocking(AsyncEzStemsClient.status)
    download = blocking(AsyncEzStemsClient.download)
    list_keys = blocking(AsyncEzStemsClient.list_keys)
    deactivate_key = blocking(AsyncEzStemsClient.deactivate_key)
    generate_key = blocking(AsyncEzStemsClient.generate_key)
