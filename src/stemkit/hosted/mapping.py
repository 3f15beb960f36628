"""What a server's answer means: a read answer (:class:`Reply`), failed answers mapped to stemkit errors
(:func:`default_error`, refined by each plugin's :data:`ErrorMapper`), and answers checked against the wire
models (:func:`parse_answer`).

Every text taken from a server is scrubbed of known API keys before it can reach a message: a server that
echoes the ``Authorization`` header in its error body does not get the key printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from stemkit._secrets import scrub
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

__all__ = [
    "ErrorContext",
    "ErrorMapper",
    "PresignedURLRejected",
    "Reply",
    "default_error",
    "parse_answer",
    "safe_url",
]

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amz-request-id")
M = TypeVar("M", bound=BaseModel)


def safe_url(url: str | httpx.URL) -> str:
    """The URL without its query string and fragment (where presigned signatures live): safe in a message."""
    try:
        return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))
    except (httpx.InvalidURL, ValueError):
        return "<an invalid URL>"


@dataclass(frozen=True)
class Reply:
    """A server's answer, read whole (within the transport's size limit)."""

    method: str
    url: httpx.URL
    status_code: int
    headers: httpx.Headers
    content: bytes
    provider: str = "provider"

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return scrub(self.content.decode("utf-8", errors="replace"))

    @property
    def label(self) -> str:
        return f"{self.method} {safe_url(self.url)}"

    def json(self) -> Any:
        """The body as JSON, or a ProtocolError saying what came instead."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(
                f"{self.label} answered HTTP {self.status_code} with a body that is not JSON "
                f"({self.headers.get('content-type', 'no content type')}, {len(self.content)} bytes)",
                provider=self.provider,
                status_code=self.status_code,
            ) from None


class PresignedURLRejected(ProviderError):
    """Storage refused a presigned URL (HTTP 401/403 from a non-API host): it expired or was revoked.

    The hosted job lifecycle catches this to fetch fresh URLs from the API once; if those fail too it surfaces.
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

    @classmethod
    def of(cls, reply: Reply, *, provider: str, to_api: bool) -> ErrorContext:
        text = reply.text[:2000]
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        request_id = next((reply.headers[h] for h in _REQUEST_ID_HEADERS if h in reply.headers), None)
        return cls(
            provider=provider,
            method=reply.method,
            url=safe_url(reply.url),
            status_code=reply.status_code,
            headers=reply.headers,
            body=body,
            text=text,
            request_id=scrub(request_id)[:200] if request_id else None,
            rate_limit=RateLimitInfo.from_headers(reply.headers),
            to_api=to_api,
        )

    @property
    def server_message(self) -> str | None:
        """The human message from the common JSON error shapes, if any."""
        body = self.body
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return str(err["message"])[:500]
            for key in ("message", "error", "detail"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])[:500]
        return None

    @property
    def server_code(self) -> str | None:
        body = self.body
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and isinstance(err.get("code"), str):
                return str(err["code"])[:100]
            if isinstance(body.get("code"), str):
                return str(body["code"])[:100]
        return None

    def said(self) -> str:
        """What the server said, in a few words: its message, else the start of its body, else the reason."""
        text = (self.server_message or self.text.strip()[:200] or httpx.codes.get_reason_phrase(self.status_code))
        return " ".join(text.split()).rstrip(".")

    def describe(self) -> str:
        """``POST https://host/api/v1/jobs answered HTTP 400: <server message>`` (no final full stop)."""
        return f"{self.method} {self.url} answered HTTP {self.status_code}: {self.said()}"

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
        return PresignedURLRejected(f"{msg}; the presigned URL has expired or was refused", **kw)
    if status == 401:
        return AuthenticationError(f"{msg}; check the API key for {ctx.provider}", **kw)
    if status == 402:
        return QuotaExceededError(f"{msg}; add credits to the {ctx.provider} account", **kw)
    if status == 403:
        return PermissionDeniedError(f"{msg}; the API key is not allowed to do this", **kw)
    if status == 413:
        return ProviderLimitError(f"{msg}; the input is too large for {ctx.provider}", **kw)
    if status == 429:
        rl = ctx.rate_limit
        wait = f"retry after {rl.retry_after:g} seconds" if rl.retry_after is not None else "retry later"
        return RateLimitError(
            f"{msg}; slow down, or {wait}",
            retry_after=rl.retry_after,
            limit=rl.limit,
            remaining=rl.remaining,
            reset=rl.reset,
            **kw,
        )
    if status >= 500 or status == 408:
        return ProviderUnavailableError(f"{msg}; {ctx.provider} is failing, try again later", **kw)
    if 300 <= status < 400:
        return ProtocolError(f"{msg}; a redirect without a usable Location", **kw)
    return ProviderError(msg, **kw)


def parse_answer(model: type[M], data: Any, *, provider: str, what: str) -> M:
    """``data`` validated as ``model``, or a ProtocolError naming the endpoint and the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise ProtocolError(
            f"{what} answered with an unexpected body ({exc.error_count()} problem(s), first at {where}: "
            f"{first['msg']}); check the base URL, or update the plugin if the API has changed",
            provider=provider,
        ) from None
