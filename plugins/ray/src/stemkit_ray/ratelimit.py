"""One rate limit for a whole cluster: a Ray actor that every worker asks before each request to a provider's
API, and that hears what any worker's answers said (``Retry-After``, ``X-RateLimit-*``).

The window is kept by :class:`SlidingWindow` (pure, clock given: tested on its own): at most ``limit`` requests
in any ``window`` seconds. A provider counts in fixed windows (StemSplit: per minute, from the key's first
request), and a sliding window never exceeds any fixed one; ``margin`` seconds more cover the spread between
when a request is allowed and when it reaches the server. A 429's ``Retry-After`` or an exhausted window
(``X-RateLimit-Remaining: 0`` until ``X-RateLimit-Reset``) pauses every worker; a smaller
``X-RateLimit-Limit`` than configured lowers the limit.

:class:`ClusterRateLimiter` is the actor (async: waiting callers cost nothing, and are served first come,
first served); :class:`ClusterLimiterClient` is what each worker process installs into stemkit's transports
(:func:`stemkit.hosted.install_rate_limiter`).
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from dataclasses import dataclass
from typing import Any

from stemkit.errors import ConfigError
from stemkit.hosted import RateLimitInfo, RateScope

__all__ = ["ClusterLimiterClient", "ClusterRateLimiter", "Rate", "SlidingWindow", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
#: a pause longer than this is not believed (a clock far off, a hostile header): the window itself is the cap
_MAX_PAUSE = 3600.0


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``window`` seconds."""

    limit: int
    window: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.window:g}s"


def parse_rate(text: str | int | Rate, *, name: str = "rate") -> Rate:
    """``"60/min"``, ``"10/3s"``, ``"1000/h"`` (or a number: per minute) as a :class:`Rate`."""
    if isinstance(text, Rate):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        text = f"{text}/min"
    match = _RATE.match(str(text))
    if match is None or int(match[1]) < 1:
        raise ConfigError(f"{name}: {text!r} is not a rate; write requests per time, e.g. '60/min', '10/3s'")
    count = float(match[2]) if match[2] else 1.0
    window = count * _UNIT[(match[3] or "s").lower()]
    if window <= 0:
        raise ConfigError(f"{name}: {text!r} has no time span; write e.g. '60/min'")
    return Rate(int(match[1]), window)


class SlidingWindow:
    """At most ``rate.limit`` grants in any ``rate.window + margin`` seconds, and none while paused.

    ``wait(now)`` says how long until the next grant may be given; ``grant(now)`` records one. ``observe``
    applies what a server said. Times are Unix seconds (the server's reset header is one).
    """

    def __init__(self, rate: Rate, *, margin: float = 0.0) -> None:
        self.rate = rate
        self.margin = margin
        self._grants: collections.deque[float] = collections.deque()
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until one more grant keeps within the limit (0: at once)."""
        earliest = self._paused_until
        if len(self._grants) >= self.rate.limit:
            earliest = max(earliest, self._grants[-self.rate.limit] + self.rate.window + self.margin)
        return max(0.0, earliest - now)

    def grant(self, now: float) -> None:
        self._grants.append(now)
        while len(self._grants) > self.rate.limit:
            self._grants.popleft()

    def pause(self, until: float, now: float) -> None:
        """No grant before ``until`` (capped at an hour from ``now``)."""
        self._paused_until = max(self._paused_until, min(until, now + _MAX_PAUSE))

    def observe(self, status: int, info: RateLimitInfo, now: float) -> None:
        """What one answer said: a ``Retry-After`` (on 429/503) or an exhausted window pauses everyone."""
        if info.retry_after is not None and status in (429, 503):
            self.pause(now + info.retry_after, now)
        elif status == 429:  # refused without saying for how long: wait out a whole window
            self.pause(now + self.rate.window, now)
        if info.remaining == 0 and info.reset is not None:
            self.pause(min(info.reset, now + self.rate.window) + self.margin, now)
        if info.limit is not None and 0 < info.limit < self.rate.limit:
            self.rate = Rate(info.limit, self.rate.window)


class ClusterRateLimiter:
    """The Ray actor (create it with ``ray.remote(ClusterRateLimiter).options(max_concurrency=...)``).

    ``rates`` maps a provider name to its :class:`Rate`; a provider first met without one takes the rate a
    worker registers for it (from its capabilities), else the ``X-RateLimit-Limit`` its answers carry.
    """

    def __init__(self, rates: dict[str, Rate] | None = None, *, margin: float = 1.0) -> None:
        self._rates = dict(rates or {})
        self._margin = margin
        self._windows: dict[str, SlidingWindow] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.grants: collections.Counter[str] = collections.Counter()
        self.refusals: collections.Counter[str] = collections.Counter()

    def register(self, provider: str, rate: Rate) -> Rate:
        """A worker's default for ``provider`` (its documented limit); a rate set for the run wins."""
        current = self._rates.setdefault(provider, rate)
        return current

    def _window(self, provider: str) -> SlidingWindow | None:
        window = self._windows.get(provider)
        if window is None and provider in self._rates:
            window = self._windows[provider] = SlidingWindow(self._rates[provider], margin=self._margin)
        return window

    async def acquire(self, provider: str) -> float:
        """Return when one request to ``provider`` may go; the seconds waited."""
        started = time.time()
        lock = self._locks.setdefault(provider, asyncio.Lock())
        async with lock:  # first come, first served: one waiter at a time is next
            while (window := self._window(provider)) is not None and (delay := window.wait(time.time())) > 0:
                await asyncio.sleep(delay)
            if window is not None:
                window.grant(time.time())
        self.grants[provider] += 1
        return time.time() - started

    def observe(self, provider: str, status: int, info: dict[str, Any]) -> None:
        parsed = RateLimitInfo(**info)
        if status == 429:
            self.refusals[provider] += 1
        if provider not in self._rates and parsed.limit:
            self._rates[provider] = Rate(parsed.limit, 60.0)
        window = self._window(provider)
        if window is not None:
            window.observe(status, parsed, time.time())

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per provider: its rate, requests let through and 429 answers seen."""
        names = set(self._rates) | set(self.grants) | set(self.refusals)
        return {
            name: {
                "rate": str(self._rates[name]) if name in self._rates else None,
                "requests": self.grants[name],
                "refused": self.refusals[name],
            }
            for name in sorted(names)
        }


class ClusterLimiterClient:
    """A worker's side: stemkit's :class:`~stemkit.hosted.RateLimiter` hook, asking the cluster's actor.

    Only answers that carry something the limiter acts on are reported (a 429, a ``Retry-After``, an exhausted
    window, a limit): the rest would be a message per poll for nothing.
    """

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._limit_told = False

    async def acquire(self, scope: RateScope) -> None:
        await self._actor.acquire.remote(scope.provider)

    async def observe(self, scope: RateScope, status: int, info: RateLimitInfo) -> None:
        telling = status in (429, 503) or info.retry_after is not None or info.remaining == 0
        if telling or (info.limit is not None and not self._limit_told):
            self._limit_told = True
            payload = {"limit": info.limit, "remaining": info.remaining, "reset": info.reset,
                       "retry_after": info.retry_after}  # fmt: skip
            self._actor.observe.remote(scope.provider, status, payload)  # fire and forget: never wait on it
