"""A hook that keeps every hosted transport of a process within a provider's rate limit, wherever the limit is
kept: in this process, or in a service shared by a whole cluster.

A provider documents a rate limit per API key (StemSplit: 60 requests a minute), and a key is shared by every
process that uses it. Only something that sees all of those processes can keep them under it, so the transport
does not count requests itself: before each request to a provider's API (never to presigned storage, which
the limit does not cover) it awaits the installed limiter's :meth:`RateLimiter.acquire`, and after each answer
from the API it tells the limiter what the answer said (:meth:`RateLimiter.observe`: the status and the
parsed ``Retry-After`` / ``X-RateLimit-*`` headers), so a 429 or an exhausted window seen by one worker slows
every worker down.

Nothing is installed by default: a plain ``separate`` or ``separate_many`` relies on the transport's retry
layer alone. An execution engine (the Ray engine installs a client of its cluster-wide limiter in each worker
process) or an application calls :func:`install_rate_limiter` once per process, or uses
:func:`rate_limited` around a block.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from stemkit.hosted._ratelimit import RateLimitInfo

__all__ = ["RateLimiter", "RateScope", "install_rate_limiter", "installed_rate_limiter", "rate_limited"]


@dataclass(frozen=True)
class RateScope:
    """Whose limit a request counts against: a provider's API at one base URL (never the key itself)."""

    provider: str
    base_url: str


@runtime_checkable
class RateLimiter(Protocol):
    """What the transport asks before and tells after each API request. Both are awaited on the transport's
    event loop: an implementation that talks to another process does so asynchronously, and a wait in
    :meth:`acquire` is cancelled with the request (the caller's deadline bounds it)."""

    async def acquire(self, scope: RateScope) -> None:
        """Return when one more request to ``scope`` may be sent now."""

    async def observe(self, scope: RateScope, status: int, info: RateLimitInfo) -> None:
        """What an answer from ``scope`` said: its HTTP status and rate-limit headers (any may be absent)."""


_lock = threading.Lock()
_installed: RateLimiter | None = None


def install_rate_limiter(limiter: RateLimiter | None) -> RateLimiter | None:
    """Make ``limiter`` the one every hosted transport in this process consults (``None`` removes it);
    returns the one it replaces. Process-wide on purpose: a rate limit belongs to the key, not to a call."""
    global _installed
    with _lock:
        previous, _installed = _installed, limiter
    return previous


def installed_rate_limiter() -> RateLimiter | None:
    """The limiter hosted transports consult now, if any."""
    return _installed


@contextlib.contextmanager
def rate_limited(limiter: RateLimiter) -> Iterator[RateLimiter]:
    """Install ``limiter`` for the block, then put back whatever was installed before."""
    previous = install_rate_limiter(limiter)
    try:
        yield limiter
    finally:
        install_rate_limiter(previous)
