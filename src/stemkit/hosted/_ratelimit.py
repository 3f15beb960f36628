"""Rate-limit headers: ``X-RateLimit-Limit/Remaining/Reset`` and ``Retry-After``."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RateLimitInfo", "parse_retry_after"]


def _int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RateLimitInfo:
    """What the last response said about the rate limit; ``None`` where a header was absent.

    ``reset`` is the Unix time at which the window resets, ``retry_after`` the seconds to wait (429/503).
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitInfo:
        """Parse the headers of one response (``headers`` must look up case-insensitively, like httpx's)."""
        reset = _int(headers, "x-ratelimit-reset")
        return cls(
            limit=_int(headers, "x-ratelimit-limit"),
            remaining=_int(headers, "x-ratelimit-remaining"),
            reset=float(reset) if reset is not None else None,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )

    @property
    def present(self) -> bool:
        return any(v is not None for v in (self.limit, self.remaining, self.reset, self.retry_after))
