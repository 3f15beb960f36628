"""The HTTP transport every hosted plugin uses (httpx, sync and async).

What it guarantees, so a plugin does not have to:

* the API key goes only to URLs under the API's base URL — never to presigned storage URLs, never across
  a redirect to another host or path (an httpx ``Auth`` adds it, a request hook strips it elsewhere);
* one retry layer (:class:`RetryPolicy`, tenacity) honoring ``Retry-After``; a POST sent with an
  idempotency key keeps the same key on every retry;
* ``X-RateLimit-*`` headers parsed into :attr:`last_rate_limit` after every response;
* error responses mapped to :mod:`stemkit.errors` by the plugin's ``error_mapper`` hook, falling back to
  :func:`default_error`; transport failures become :class:`~stemkit.errors.ProviderUnavailableError`;
* uploads streamed from disk (raw PUT or multipart), never read whole into memory;
* downloads streamed to a temporary file in the destination directory and renamed into place, so a
  half-written file is never visible under the final name;
* the key never appears in ``repr``, logs or error messages (URLs in messages drop their query string,
  where presigned signatures live).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast

import anyio
import anyio.to_thread
import httpx
import tenacity

from stemkit.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
)
from stemkit.hosted._ratelimit import RateLimitInfo
from stemkit.hosted._retry import IncompleteBody, RetryableStatus, RetryPolicy, retry_kwargs
from stemkit.hosted._secret import Secret

__all__ = [
    "AsyncHostedTransport",
    "ErrorContext",
    "ErrorMapper",
    "HostedTransport",
    "PresignedURLRejected",
    "TransferProgress",
    "default_error",
]

_log = logging.getLogger("stemkit.hosted")

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_REPLAY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amz-request-id")

TransferProgress = Callable[[int, int | None], None]
"""Called with (bytes transferred so far, total bytes or None) while a file moves."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context (httpx's defaults) shared by every client: building one loads the CA bundle,
    tens of milliseconds of CPU that would otherwise be paid per separation — on the event loop, for async
    ones, where eight concurrent jobs would queue behind it."""
    return httpx.create_ssl_context()


class PresignedURLRejected(ProviderError):
    """Storage refused a presigned URL (HTTP 401/403 from a non-API host): it expired or was revoked.

    A plugin catches this to fetch fresh URLs from the API once; if the fresh ones fail too it surfaces.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)


@dataclass(frozen=True)
class ErrorContext:
    """Everything a plugin's error mapper may look at; the body is parsed JSON when it was JSON."""

    provider: str
    method: str
    url: str
    """The request URL without its query string (safe to put in a message)."""
    status_code: int
    headers: httpx.Headers
    body: Any
    text: str
    request_id: str | None
    rate_limit: RateLimitInfo
    to_api: bool
    """False for storage (presigned) URLs."""

    @property
    def server_message(self) -> str | None:
        """The human message from the common JSON error shapes, if any."""
        body = self.body
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return str(err["message"])
            for key in ("message", "error", "detail"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])
        return None

    @property
    def server_code(self) -> str | None:
        body = self.body
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("code"), str):
                return str(err["code"])
            if isinstance(body.get("code"), str):
                return str(body["code"])
        return None

    def describe(self) -> str:
        """``POST https://host/api/v1/jobs answered HTTP 400: <server message>``."""
        said = self.server_message or self.text.strip()[:200] or httpx.codes.get_reason_phrase(self.status_code)
        return f"{self.method} {self.url} answered HTTP {self.status_code}: {said}"

    def common(self) -> dict[str, Any]:
        """The keyword arguments every ProviderError takes, filled from this response."""
        return {
            "provider": self.provider,
            "status_code": self.status_code,
            "code": self.server_code,
            "request_id": self.request_id,
        }


ErrorMapper = Callable[[ErrorContext], ProviderError | None]
"""A plugin hook: return the stemkit error for a failed response, or None for :func:`default_error`."""


def default_error(ctx: ErrorContext) -> ProviderError:
    """Map a failed response by status alone; plugins refine it by the provider's documented codes."""
    status, msg, kw = ctx.status_code, ctx.describe(), ctx.common()
    if not ctx.to_api and status in (401, 403):
        return PresignedURLRejected(
            f"{msg}. The presigned URL has expired or was refused; ask the API for a fresh one.", **kw
        )
    if status == 401:
        return AuthenticationError(f"{msg}. Check the API key for {ctx.provider}.", **kw)
    if status == 402:
        return QuotaExceededError(f"{msg}. Add credits to the {ctx.provider} account.", **kw)
    if status == 403:
        return PermissionDeniedError(f"{msg}. The API key is not allowed to do this.", **kw)
    if status == 413:
        return ProviderLimitError(f"{msg}. The input is too large for {ctx.provider}.", **kw)
    if status == 429:
        rl = ctx.rate_limit
        return RateLimitError(
            f"{msg}. Slow down, or retry after {rl.retry_after or 'a'} seconds.",
            retry_after=rl.retry_after,
            limit=rl.limit,
            remaining=rl.remaining,
            reset=rl.reset,
            **kw,
        )
    if status >= 500 or status == 408:
        return ProviderUnavailableError(f"{msg}. {ctx.provider} is failing; try again later.", **kw)
    return ProviderError(msg, **kw)


class ErrorStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    headers: dict[str, str]
    replay_safe: bool

    @property
    def label(self) -> str:
        return f"{self.method} {_safe_url(self.url)}"


def _safe_url(url: str | httpx.URL) -> str:
    return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default)


def _user_agent(provider: str) -> str:
    try:
        version = metadata.version("stemkit")
    except metadata.PackageNotFoundError:
        version = "0"
    return (
        f"stemkit/{version} ({provider}) httpx/{httpx.__version__} "
        f"python/{platform.python_version()} ({platform.system().lower()})"
    )


class _ApiOnlyAuth(httpx.Auth):
    """Adds the key to requests under the API base URL, and only to those."""

    def __init__(self, owner: _TransportBase) -> None:
        self._owner = owner

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._owner._apply_auth(request)
        yield request


class _TransportBase:
    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        api_key: str | Secret | None,
        auth_header: str = "Authorization",
        auth_scheme: str | None = "Bearer",
        error_mapper: ErrorMapper | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        idempotency_header: str = "Idempotency-Key",
        max_connections: int = 16,
    ) -> None:
        self.provider = provider
        self._base = httpx.URL(base_url.rstrip("/"))
        if self._base.scheme not in ("http", "https") or not self._base.host:
            raise ValueError(f"{provider}: base URL {base_url!r} must be an absolute http(s) URL")
        self._base_path = self._base.path.rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) or api_key is None else Secret(api_key)
        self._auth_header = auth_header
        self._auth_scheme = auth_scheme
        self._error_mapper = error_mapper
        self.retry = retry or RetryPolicy()
        self._timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._idempotency_header = idempotency_header
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._last_rate_limit: RateLimitInfo | None = None

    # -- public, I/O free ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self._base)

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        """The ``X-RateLimit-*`` values of the most recent API response that carried them."""
        return self._last_rate_limit

    def url(self, path_or_url: str) -> str:
        """``/jobs`` → ``<base_url>/jobs``; an absolute URL is returned as is."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def is_api_url(self, url: str | httpx.URL) -> bool:
        """True when ``url`` is under the base URL (same scheme, host, port and path prefix)."""
        u = httpx.URL(str(url))
        if _origin(u) != _origin(self._base):
            return False
        return not self._base_path or u.path == self._base_path or u.path.startswith(self._base_path + "/")

    def __repr__(self) -> str:
        key = "***" if self._key else None
        return f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r}, api_key={key})"

    # -- internals shared by sync and async ---------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "verify": _tls_context(),
            "timeout": self._timeout,
            "follow_redirects": True,
            "auth": _ApiOnlyAuth(self),
            "headers": {"User-Agent": _user_agent(self.provider)},
            "limits": self._limits,
        }

    def _apply_auth(self, request: httpx.Request) -> None:
        if self._key and self.is_api_url(request.url):
            value = self._key.reveal()
            request.headers[self._auth_header] = f"{self._auth_scheme} {value}" if self._auth_scheme else value
        else:
            self._strip_auth(request)

    def _strip_auth(self, request: httpx.Request) -> None:
        """Request hook: runs for every hop, redirects included."""
        if not self.is_api_url(request.url):
            request.headers.pop(self._auth_header, None)
            if self._auth_header.lower() != "authorization":
                request.headers.pop("Authorization", None)

    def _call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        replay_safe: bool | None,
        idempotency_key: str | bool | None,
    ) -> _Call:
        method = method.upper()
        hdrs = dict(headers or {})
        if idempotency_key:
            # Generated once here, outside the retry loop: every retry of this call carries the same key.
            hdrs[self._idempotency_header] = uuid.uuid4().hex if idempotency_key is True else str(idempotency_key)
        if replay_safe is None:
            replay_safe = method in _REPLAY_SAFE_METHODS or bool(idempotency_key)
        return _Call(method, self.url(url), hdrs, replay_safe)

    def _settle(self, response: httpx.Response, call: _Call) -> httpx.Response:
        """Record rate limits; raise the internal retry/error signals for failed answers (body read)."""
        if self.is_api_url(response.request.url):
            info = RateLimitInfo.from_headers(response.headers)
            if info.present:
                self._last_rate_limit = info
        if response.is_success:
            return response
        if response.status_code in self.retry.retry_statuses:
            info = RateLimitInfo.from_headers(response.headers)
            raise RetryableStatus(response, info.retry_after)
        raise ErrorStatus(response)

    def _error_for(self, response: httpx.Response, call: _Call) -> ProviderError:
        try:
            body: Any = response.json()
        except (ValueError, httpx.ResponseNotRead):
            body = None
        try:
            text = response.text[:1000]
        except (httpx.ResponseNotRead, UnicodeDecodeError):
            text = ""
        request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
        ctx = ErrorContext(
            provider=self.provider,
            method=call.method,
            url=_safe_url(response.request.url),
            status_code=response.status_code,
            headers=response.headers,
            body=body,
            text=text,
            request_id=request_id,
            rate_limit=RateLimitInfo.from_headers(response.headers),
            to_api=self.is_api_url(response.request.url),
        )
        mapped = self._error_mapper(ctx) if self._error_mapper else None
        return mapped if mapped is not None else default_error(ctx)

    def _failure(self, exc: BaseException, call: _Call) -> ProviderError:
        if isinstance(exc, RetryableStatus | ErrorStatus):
            return self._error_for(exc.response, call)
        if isinstance(exc, IncompleteBody):
            return ProviderUnavailableError(
                f"{call.label}: the connection was cut after {exc.received} of {exc.expected} bytes, "
                f"{self.retry.max_attempts} time(s); try again later.",
                provider=self.provider,
            )
        detail = str(exc) or type(exc).__name__
        return ProviderUnavailableError(
            f"{call.label} failed: {type(exc).__name__}: {detail}. Check the network and the base URL "
            f"({self.base_url}), or try again later.",
            provider=self.provider,
        )

    def _retrying_kwargs(self, call: _Call) -> dict[str, Any]:
        return retry_kwargs(self.retry, replay_safe=call.replay_safe, label=call.label)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            label = f"{response.request.method} {_safe_url(response.request.url)}"
            raise ProtocolError(
                f"{label} answered HTTP {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}).",
                provider=self.provider,
                status_code=response.status_code,
            ) from None

    @staticmethod
    def _check_length(response: httpx.Response) -> None:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and response.num_bytes_downloaded != int(declared):
            raise IncompleteBody(response.num_bytes_downloaded, int(declared))

    @staticmethod
    def _temp_for(dest: Path) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        return fd, Path(name)


_PASS = (RetryableStatus, ErrorStatus, IncompleteBody, httpx.TransportError)


def _upload_headers(call: _Call, size: int, content_type: str | None) -> dict[str, str]:
    return {
        **call.headers,
        "Content-Length": str(size),
        "Content-Type": content_type or "application/octet-stream",
    }


def _file_chunks(path: Path, size: int, progress: TransferProgress | None) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            sent += len(chunk)
            if progress:
                progress(sent, size)
            yield chunk


async def _afile_chunks(path: Path, size: int, progress: TransferProgress | None) -> AsyncIterator[bytes]:
    sent = 0
    async with await anyio.open_file(path, "rb") as fh:
        while chunk := await fh.read(CHUNK_SIZE):
            sent += len(chunk)
            if progress:
                progress(sent, size)
            yield chunk


class _ProgressReader:
    """A read-only file wrapper for httpx multipart: reports progress, keeps seek/fileno for its length."""

    def __init__(self, fh: IO[bytes], size: int, progress: TransferProgress | None) -> None:
        self._fh, self._size, self._progress = fh, size, progress

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(n)
        if self._progress:
            self._progress(self._fh.tell(), self._size)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:
        return self._fh.fileno()


class HostedTransport(_TransportBase):
    """Synchronous transport; see the module docstring for what it guarantees.

    ``http_transport`` lets a caller route through a custom httpx transport (proxies, mounts).
    """

    def __init__(self, *, http_transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = httpx.Client(
            transport=http_transport,
            event_hooks={"request": [self._strip_auth]},
            **self._client_kwargs(),
        )

    def _run(self, call: _Call, attempt: Callable[[], Any]) -> Any:
        try:
            return tenacity.Retrying(**self._retrying_kwargs(call))(attempt)
        except _PASS as exc:
            raise self._failure(exc, call) from None

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        idempotency_key: str | bool | None = None,
    ) -> httpx.Response:
        """Send one request (retried under the policy) and return the successful, fully read response.

        ``url`` is a path under the base URL or an absolute URL. ``idempotency_key=True`` generates a key
        that every retry reuses. ``replay_safe`` defaults to True for GET/HEAD/OPTIONS/PUT/DELETE and for
        requests with an idempotency key. Failures raise a :class:`~stemkit.errors.ProviderError`.
        """
        call = self._call(method, url, headers, replay_safe, idempotency_key)

        def attempt() -> httpx.Response:
            return self._settle(
                self._client.request(call.method, call.url, params=params, json=json, headers=call.headers),
                call,
            )

        response: httpx.Response = self._run(call, attempt)
        return response

    def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the body parsed as JSON (:class:`~stemkit.errors.ProtocolError` if not)."""
        return self._json(self.request(method, url, **kwargs))

    def upload(
        self,
        method: str,
        url: str,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        progress: TransferProgress | None = None,
    ) -> httpx.Response:
        """Stream a file from disk as the raw request body (a presigned PUT), with its Content-Length."""
        path = Path(path)
        size = path.stat().st_size
        call = self._call(method, url, headers, replay_safe, None)

        def attempt() -> httpx.Response:
            body = _file_chunks(path, size, progress)
            return self._settle(
                self._client.request(
                    call.method, call.url, content=body, headers=_upload_headers(call, size, content_type)
                ),
                call,
            )

        response: httpx.Response = self._run(call, attempt)
        return response

    def upload_multipart(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        field: str = "file",
        filename: str | None = None,
        content_type: str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        idempotency_key: str | bool | None = None,
        progress: TransferProgress | None = None,
    ) -> httpx.Response:
        """POST a file from disk as ``multipart/form-data`` (streamed; ``data`` adds plain form fields)."""
        path = Path(path)
        size = path.stat().st_size
        call = self._call("POST", url, headers, replay_safe, idempotency_key)

        def attempt() -> httpx.Response:
            with path.open("rb") as fh:
                files = {
                    field: (
                        filename or path.name,
                        cast(IO[bytes], _ProgressReader(fh, size, progress)),
                        content_type,
                    )
                }
                return self._settle(
                    self._client.request(call.method, call.url, files=files, data=data, headers=call.headers),
                    call,
                )

        response: httpx.Response = self._run(call, attempt)
        return response

    def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        progress: TransferProgress | None = None,
    ) -> Path:
        """Stream a GET into ``dest`` through a temporary file renamed into place; returns ``dest``.

        A cut connection or a short body is retried like any GET; if every attempt fails, nothing is left
        behind (no partial file, no temporary file).
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        call = self._call("GET", url, headers, True, None)

        def attempt() -> Path:
            fd, tmp = self._temp_for(dest)
            try:
                with (
                    os.fdopen(fd, "wb") as out,
                    self._client.stream("GET", call.url, params=params, headers=call.headers) as response,
                ):
                    if not response.is_success:
                        response.read()
                    self._settle(response, call)
                    total = int(response.headers.get("content-length", "0")) or None
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        if progress:
                            progress(response.num_bytes_downloaded, total)
                    self._check_length(response)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            return dest

        result: Path = self._run(call, attempt)
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncHostedTransport(_TransportBase):
    """The asyncio/anyio twin of :class:`HostedTransport`, same methods, awaited."""

    def __init__(self, *, http_transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)

        async def strip(request: httpx.Request) -> None:
            self._strip_auth(request)

        self._client = httpx.AsyncClient(
            transport=http_transport, event_hooks={"request": [strip]}, **self._client_kwargs()
        )

    async def _run(self, call: _Call, attempt: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await tenacity.AsyncRetrying(sleep=anyio.sleep, **self._retrying_kwargs(call))(attempt)
        except _PASS as exc:
            raise self._failure(exc, call) from None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        idempotency_key: str | bool | None = None,
    ) -> httpx.Response:
        """See :meth:`HostedTransport.request`."""
        call = self._call(method, url, headers, replay_safe, idempotency_key)

        async def attempt() -> httpx.Response:
            response = await self._client.request(call.method, call.url, params=params, json=json, headers=call.headers)
            return self._settle(response, call)

        response: httpx.Response = await self._run(call, attempt)
        return response

    async def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """See :meth:`HostedTransport.request_json`."""
        return self._json(await self.request(method, url, **kwargs))

    async def upload(
        self,
        method: str,
        url: str,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        progress: TransferProgress | None = None,
    ) -> httpx.Response:
        """See :meth:`HostedTransport.upload`."""
        path = Path(path)
        size = path.stat().st_size
        call = self._call(method, url, headers, replay_safe, None)

        async def attempt() -> httpx.Response:
            response = await self._client.request(
                call.method,
                call.url,
                content=_afile_chunks(path, size, progress),
                headers=_upload_headers(call, size, content_type),
            )
            return self._settle(response, call)

        response: httpx.Response = await self._run(call, attempt)
        return response

    async def upload_multipart(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        field: str = "file",
        filename: str | None = None,
        content_type: str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        idempotency_key: str | bool | None = None,
        progress: TransferProgress | None = None,
    ) -> httpx.Response:
        """See :meth:`HostedTransport.upload_multipart` (file chunks are read between awaits)."""
        path = Path(path)
        size = path.stat().st_size
        call = self._call("POST", url, headers, replay_safe, idempotency_key)

        async def attempt() -> httpx.Response:
            with path.open("rb") as fh:
                files = {
                    field: (
                        filename or path.name,
                        cast(IO[bytes], _ProgressReader(fh, size, progress)),
                        content_type,
                    )
                }
                response = await self._client.request(
                    call.method, call.url, files=files, data=data, headers=call.headers
                )
                return self._settle(response, call)

        response: httpx.Response = await self._run(call, attempt)
        return response

    async def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        progress: TransferProgress | None = None,
    ) -> Path:
        """See :meth:`HostedTransport.download`."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        call = self._call("GET", url, headers, True, None)

        async def attempt() -> Path:
            fd, tmp = self._temp_for(dest)
            os.close(fd)
            try:
                async with (
                    await anyio.open_file(tmp, "wb") as out,
                    self._client.stream("GET", call.url, params=params, headers=call.headers) as response,
                ):
                    if not response.is_success:
                        await response.aread()
                    self._settle(response, call)
                    total = int(response.headers.get("content-length", "0")) or None
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        await out.write(chunk)
                        if progress:
                            progress(response.num_bytes_downloaded, total)
                    self._check_length(response)
                await anyio.to_thread.run_sync(os.replace, tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            return dest

        result: Path = await self._run(call, attempt)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
