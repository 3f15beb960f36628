"""The HTTP transport every hosted plugin uses: one async implementation on httpx, and a blocking facade.

What it guarantees, so a plugin does not have to:

* the API key goes only to URLs under the API's base URL — never to presigned storage URLs, never across a
  redirect to another host or path (:mod:`stemkit.hosted.keys`);
* one retry layer (:class:`~stemkit.hosted.RetryPolicy`, tenacity) honoring ``Retry-After`` and the caller's
  deadline; a POST sent with an idempotency key keeps the same key on every retry;
* ``X-RateLimit-*`` headers parsed into :attr:`~AsyncHostedTransport.last_rate_limit` after every response;
* the installed rate limiter (:mod:`stemkit.hosted.limiter`), if any, asked before every request to the API
  and told what each answer from the API said, so many processes can share one provider's limit;
* bounded answers: each request has a total time budget (a trickling server cannot stretch it), JSON bodies
  a size limit, downloads the limit their caller sets, counted after decompression as well as on the wire;
* every failure a :mod:`stemkit.errors` error — failed answers mapped by the plugin's ``error_mapper``
  (:mod:`stemkit.hosted.mapping`), transport failures ``ProviderUnavailableError``, unusable answers
  (redirect loops, undecodable or oversized bodies, invalid URLs) ``ProtocolError``;
* uploads streamed from disk and downloads streamed to a temporary file renamed into place
  (:mod:`stemkit.hosted.files`), never a file in memory, never file I/O on the event loop;
* the key never appears in ``repr``, logs or error messages (URLs in messages drop their query string, where
  presigned signatures live; server text is scrubbed of known keys).
"""

from __future__ import annotations

import functools
import logging
import platform
import ssl
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import httpx
import tenacity

from stemkit._portal import SyncFacade, blocking
from stemkit._secrets import scrub
from stemkit.errors import ConfigError, ProtocolError, ProviderError, ProviderUnavailableError
from stemkit.hosted._ratelimit import RateLimitInfo
from stemkit.hosted._retry import (
    BodyTooLarge,
    ErrorStatus,
    IncompleteBody,
    RequestTimedOut,
    RetryableStatus,
    RetryPolicy,
    retry_kwargs,
)
from stemkit.hosted.files import TransferProgress, file_chunks, multipart_body, receive_file
from stemkit.hosted.keys import ApiScope, Secret
from stemkit.hosted.limiter import RateScope, installed_rate_limiter
from stemkit.hosted.mapping import ErrorContext, ErrorMapper, Reply, default_error, safe_url

__all__ = ["AsyncHostedTransport", "HostedTransport", "Limits"]

_log = logging.getLogger("stemkit.hosted")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_REPLAY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class Limits:
    """How much a server may send and how long one request may take.

    ``request_seconds`` is the total budget of one API request (connect, send, every read); a transfer
    (upload or download) gets that plus its size at ``min_transfer_rate`` bytes per second. A JSON answer
    over ``max_json_bytes`` is refused; an error answer is read up to ``max_error_bytes`` (the rest is not
    needed to say what went wrong). The caller's own deadline bounds all of it.
    """

    max_json_bytes: int = 8 << 20
    max_error_bytes: int = 64 << 10
    request_seconds: float = 60.0
    min_transfer_rate: float = 64 << 10

    def transfer_seconds(self, size: int | None) -> float:
        return self.request_seconds + (size or 0) / self.min_transfer_rate


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context (httpx's defaults) shared by every client: building one loads the CA bundle,
    tens of milliseconds of CPU that would otherwise be paid per separation, on the event loop."""
    return httpx.create_ssl_context()


def _user_agent(provider: str) -> str:
    try:
        version = metadata.version("stemkit")
    except metadata.PackageNotFoundError:
        version = "0"
    return (
        f"stemkit/{version} ({provider}) httpx/{httpx.__version__} "
        f"python/{platform.python_version()} ({platform.system().lower()})"
    )


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    headers: dict[str, str]
    replay_safe: bool

    @property
    def label(self) -> str:
        return f"{self.method} {safe_url(self.url)}"


class _ApiOnlyAuth(httpx.Auth):
    """Adds the key to requests under the API base URL, and only to those (redirect hops included)."""

    def __init__(self, owner: AsyncHostedTransport) -> None:
        self._owner = owner

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._owner._apply_auth(request)
        yield request


class AsyncHostedTransport:
    """The transport. ``url`` arguments are paths under the base URL or absolute URLs.

    ``http_transport`` routes through a custom httpx transport (proxies, mounts). ``limits`` bounds answers
    (:class:`Limits`). Every method raises :mod:`stemkit.errors` errors only.
    """

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
        limits: Limits | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        try:
            base = httpx.URL(base_url.rstrip("/"))
        except (httpx.InvalidURL, ValueError):
            base = httpx.URL()
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(f"{provider}: base URL {base_url!r} must be an absolute http(s) URL")
        self._scope = ApiScope(base)
        self._key = api_key if isinstance(api_key, Secret) or api_key is None else Secret(api_key)
        self._auth_header = auth_header
        self._auth_scheme = auth_scheme
        self._error_mapper = error_mapper
        self.retry = retry or RetryPolicy()
        self.limits = limits or Limits()
        self._idempotency_header = idempotency_header
        self._last_rate_limit: RateLimitInfo | None = None
        self._last_replayed = False

        async def strip(request: httpx.Request) -> None:
            self._strip_auth(request)

        self._client = httpx.AsyncClient(
            transport=http_transport,
            verify=_tls_context(),
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            follow_redirects=True,
            auth=_ApiOnlyAuth(self),
            headers={"User-Agent": _user_agent(provider)},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            event_hooks={"request": [strip]},
        )

    # -- public, I/O free ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self._scope.base)

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        """The ``X-RateLimit-*`` values of the most recent API response that carried them."""
        return self._last_rate_limit

    @property
    def last_replayed(self) -> bool:
        """Whether the most recent successful API answer said it replays the answer to an earlier request with
        the same idempotency key (``Idempotent-Replayed: true``): nothing new was created."""
        return self._last_replayed

    def url(self, path_or_url: str) -> str:
        """``/jobs`` → ``<base_url>/jobs``; an absolute URL is returned as is."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def is_api_url(self, url: str | httpx.URL) -> bool:
        """True when ``url`` is under the base URL (same scheme, host, port and path prefix)."""
        return self._scope.contains(url)

    def __repr__(self) -> str:
        key = "***" if self._key else None
        return f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r}, api_key={key})"

    # -- requests -----------------------------------------------------------------------------------------

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
    ) -> Reply:
        """Send one request (retried under the policy) and return the successful answer, read whole.

        ``idempotency_key=True`` generates a key that every retry reuses. ``replay_safe`` defaults to True for
        GET/HEAD/OPTIONS/PUT/DELETE and for requests with an idempotency key.
        """
        call = self._call(method, url, headers, replay_safe, idempotency_key)

        async def attempt() -> Reply:
            return await self._exchange(
                call, self.limits.request_seconds, params=params, json=json, headers=call.headers
            )

        reply: Reply = await self._run(call, attempt)
        return reply

    async def request_json(self, method: str, url: str, /, **kwargs: Any) -> Any:
        """:meth:`request`, then the body parsed as JSON (:class:`~stemkit.errors.ProtocolError` if not)."""
        return (await self.request(method, url, **kwargs)).json()

    async def upload(
        self,
        method: str,
        url: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        progress: TransferProgress | None = None,
    ) -> Reply:
        """Stream a file from disk as the raw request body (a presigned PUT), with its Content-Length."""
        path = Path(path)
        size = await self._size(path)
        call = self._call(method, url, headers, replay_safe, None)
        send_headers = {
            **call.headers,
            "Content-Length": str(size),
            "Content-Type": content_type or "application/octet-stream",
        }

        async def attempt() -> Reply:
            return await self._exchange(
                call, self.limits.transfer_seconds(size), content=file_chunks(path, size, progress),
                headers=send_headers,
            )  # fmt: skip

        reply: Reply = await self._run(call, attempt)
        return reply

    async def upload_multipart(
        self,
        url: str,
        path: str | Path,
        *,
        field: str = "file",
        filename: str | None = None,
        content_type: str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        idempotency_key: str | bool | None = None,
        progress: TransferProgress | None = None,
    ) -> Reply:
        """POST a file from disk as ``multipart/form-data`` (streamed; ``data`` adds plain form fields)."""
        path = Path(path)
        size = await self._size(path)
        call = self._call("POST", url, headers, replay_safe, idempotency_key)
        form_headers, length, body = multipart_body(
            dict(data or {}), field=field, filename=filename or path.name, content_type=content_type, path=path,
            size=size, progress=progress,
        )  # fmt: skip
        send_headers = {**call.headers, **form_headers, "Content-Length": str(length)}

        async def attempt() -> Reply:
            return await self._exchange(
                call, self.limits.transfer_seconds(size), content=body(), headers=send_headers
            )

        reply: Reply = await self._run(call, attempt)
        return reply

    async def download(
        self,
        url: str,
        dest: str | Path,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        progress: TransferProgress | None = None,
    ) -> Path:
        """Stream a GET into ``dest`` through a temporary file renamed into place; returns ``dest``.

        ``max_bytes`` bounds the body (declared and received, after decompression). A cut connection or a
        short body is retried like any GET; if every attempt fails, nothing is left behind.
        """
        dest = Path(dest)
        await anyio.to_thread.run_sync(lambda: dest.parent.mkdir(parents=True, exist_ok=True))
        call = self._call("GET", url, headers, True, None)

        async def attempt() -> Path:
            budget = self.limits.transfer_seconds(max_bytes)
            await self._acquire(call.url)
            with anyio.move_on_after(budget) as scope:
                async with self._client.stream("GET", call.url, params=params, headers=call.headers) as response:
                    await self._observe(response.url, response.status_code, response.headers)
                    if not response.is_success:
                        self._settle(await self._read(response, call, success=False))
                    return await receive_file(response, dest, max_bytes=max_bytes, progress=progress)
            assert scope.cancelled_caught
            raise RequestTimedOut(budget)

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

    # -- internals ----------------------------------------------------------------------------------------

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

    @staticmethod
    async def _size(path: Path) -> int:
        return (await anyio.to_thread.run_sync(path.stat)).st_size

    async def _exchange(self, call: _Call, budget: float, **kwargs: Any) -> Reply:
        """One attempt: send, read the answer within ``budget`` seconds in total, settle it. A wait for the
        rate limiter comes first and is not part of the budget (the caller's deadline bounds it)."""
        await self._acquire(call.url)
        with anyio.move_on_after(budget) as scope:
            async with self._client.stream(call.method, call.url, **kwargs) as response:
                reply = await self._read(response, call, success=response.is_success)
            await self._observe(reply.url, reply.status_code, reply.headers)
            return self._settle(reply)
        assert scope.cancelled_caught
        raise RequestTimedOut(budget)

    async def _read(self, response: httpx.Response, call: _Call, *, success: bool) -> Reply:
        """The body, bounded: a success over the JSON limit is refused, an error answer is truncated."""
        limit = self.limits.max_json_bytes if success else self.limits.max_error_bytes
        declared_text = response.headers.get("content-length")
        declared = int(declared_text) if declared_text is not None and declared_text.isdigit() else None
        if success and declared is not None and declared > limit:
            raise BodyTooLarge(limit, declared)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                if success:
                    raise BodyTooLarge(limit, declared)
                chunks.append(chunk[: limit - (size - len(chunk))])
                break
            chunks.append(chunk)
        else:
            if success and declared is not None and response.num_bytes_downloaded != declared:
                raise IncompleteBody(response.num_bytes_downloaded, declared)
        return Reply(call.method, response.url, response.status_code, response.headers, b"".join(chunks), self.provider)

    async def _acquire(self, url: str) -> None:
        """Wait for the installed rate limiter's go-ahead before a request to the API (storage is not limited)."""
        limiter = installed_rate_limiter()
        if limiter is not None and self.is_api_url(url):
            await limiter.acquire(RateScope(self.provider, self.base_url))

    async def _observe(self, url: httpx.URL, status: int, headers: Mapping[str, str]) -> None:
        """Tell the installed rate limiter what an answer from the API said about the limit."""
        limiter = installed_rate_limiter()
        if limiter is not None and self.is_api_url(url):
            await limiter.observe(RateScope(self.provider, self.base_url), status, RateLimitInfo.from_headers(headers))

    def _settle(self, reply: Reply) -> Reply:
        """Record rate limits; raise the retry/error signals for failed answers."""
        if self.is_api_url(reply.url):
            info = RateLimitInfo.from_headers(reply.headers)
            if info.present:
                self._last_rate_limit = info
        if reply.is_success:
            if self.is_api_url(reply.url):
                self._last_replayed = reply.headers.get("idempotent-replayed", "").strip().lower() == "true"
            return reply
        if reply.status_code in self.retry.retry_statuses:
            raise RetryableStatus(reply, RateLimitInfo.from_headers(reply.headers).retry_after)
        raise ErrorStatus(reply)

    async def _run(self, call: _Call, attempt: Callable[[], Any]) -> Any:
        retrying = tenacity.AsyncRetrying(**retry_kwargs(self.retry, replay_safe=call.replay_safe, label=call.label))
        try:
            return await retrying(attempt)
        except Exception as exc:
            raise self._failure(exc, call) from None

    def _failure(self, exc: Exception, call: _Call) -> Exception:
        """The stemkit error for what ended a request, after retries."""
        provider = self.provider
        if isinstance(exc, RetryableStatus | ErrorStatus):
            ctx = ErrorContext.of(exc.reply, provider=provider, to_api=self.is_api_url(exc.reply.url))
            mapped = self._error_mapper(ctx) if self._error_mapper else None
            return mapped if mapped is not None else default_error(ctx)
        if isinstance(exc, ProviderError | ConfigError):
            return exc
        attempts = f"{self.retry.max_attempts} attempt(s)" if call.replay_safe else "1 attempt"
        if isinstance(exc, IncompleteBody):
            return ProviderUnavailableError(
                f"{call.label}: the connection was cut after {exc.received} of {exc.expected} bytes "
                f"({attempts}); try again later",
                provider=provider,
            )
        if isinstance(exc, RequestTimedOut):
            return ProviderUnavailableError(
                f"{call.label}: no complete answer within {exc.seconds:g} s ({attempts}); the server is too slow, "
                "try again later",
                provider=provider,
            )
        if isinstance(exc, BodyTooLarge):
            size = f" (it declared {exc.declared} bytes)" if exc.declared is not None else ""
            return ProtocolError(
                f"{call.label}: the answer is larger than the {exc.limit} bytes stemkit accepts{size}; refused",
                provider=provider,
            )
        detail = scrub(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        if isinstance(exc, httpx.TooManyRedirects):
            return ProtocolError(f"{call.label}: the server redirected too many times ({detail})", provider=provider)
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(
                f"{call.label}: the answer's body cannot be decoded ({detail})", provider=provider
            )
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return ProtocolError(f"{call.label}: unusable URL ({detail})", provider=provider)
        if isinstance(exc, httpx.HTTPError):
            return ProviderUnavailableError(
                f"{call.label} failed ({type(exc).__name__}: {detail}, {attempts}); check the network and the base "
                f"URL ({self.base_url}), or try again later",
                provider=provider,
            )
        return exc


class HostedTransport(SyncFacade[AsyncHostedTransport]):
    """The blocking face of :class:`AsyncHostedTransport`: the same methods, same guarantees, not awaited."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(lambda: AsyncHostedTransport(**kwargs))

    @property
    def base_url(self) -> str:
        return self.aio.base_url

    @property
    def last_rate_limit(self) -> RateLimitInfo | None:
        return self.aio.last_rate_limit

    def is_api_url(self, url: str | httpx.URL) -> bool:
        return self.aio.is_api_url(url)

    def __repr__(self) -> str:
        return repr(self.aio).replace("AsyncHostedTransport", "HostedTransport", 1)

    request = blocking(AsyncHostedTransport.request)
    request_json = blocking(AsyncHostedTransport.request_json)
    upload = blocking(AsyncHostedTransport.upload)
    upload_multipart = blocking(AsyncHostedTransport.upload_multipart)
    download = blocking(AsyncHostedTransport.download)


