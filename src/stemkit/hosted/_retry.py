"""The one retry layer of a hosted transport, built on tenacity.

Only the transport retries: plugins, the job lifecycle and the router never wrap it in another loop, so a
request is tried at most ``RetryPolicy.max_attempts`` times in total (no retries multiplied across layers).
Retries respect the caller's deadline: a wait that would end after it is not started — the last answer is
surfaced at once (a 429's ``RateLimitError`` carries its ``retry_after``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import tenacity

from stemkit.hosted.mapping import Reply

__all__ = ["BodyTooLarge", "IncompleteBody", "RequestTimedOut", "RetryPolicy", "RetryableStatus", "retry_kwargs"]

_log = logging.getLogger("stemkit.hosted")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    A request is retried when the server answers one of ``retry_statuses`` (429 and 5xx by default; a plugin
    whose provider signals rate limits with 403 adds it), when the connection cannot be made, or when it
    breaks mid-response. Requests that are not safe to replay (a POST without an idempotency key) are retried
    only when the server cannot have acted on them: connect errors and ``refused_statuses`` (429 by default;
    a provider that answers rate limits with 403 adds it).

    The wait honors ``Retry-After`` exactly; a ``Retry-After`` longer than ``max_retry_after``, or one that
    would end after the caller's deadline, is not waited out but surfaced at once as the mapped error
    (``RateLimitError.retry_after`` tells the caller when). Without ``Retry-After`` the wait doubles from
    ``backoff_initial`` up to ``backoff_max`` seconds, plus up to ``jitter`` times that at random.
    """

    max_attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    refused_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1 (1 means: never retry)")

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based) when the server named none, without jitter."""
        return float(min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1)))


class RetryableStatus(Exception):
    """An answer worth retrying; carries the (already read) reply to map it if retries run out."""

    def __init__(self, reply: Reply, retry_after: float | None) -> None:
        super().__init__(f"HTTP {reply.status_code}")
        self.reply = reply
        self.retry_after = retry_after


class ErrorStatus(Exception):
    """An answer not worth retrying (4xx); carries the read reply for the error mapper."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status_code}")
        self.reply = reply


class IncompleteBody(Exception):
    """A response body shorter than its Content-Length (the connection was cut)."""

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")
        self.received = received
        self.expected = expected


class BodyTooLarge(Exception):
    """A response body over the limit the caller set (wire or decompressed size)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(f"body over {limit} bytes")
        self.limit = limit
        self.declared = declared


class RequestTimedOut(Exception):
    """One request took longer than its total budget (a slow trickle counts: the budget is not per read)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


def is_retryable(exc: BaseException, *, replay_safe: bool, refused: frozenset[int] = frozenset({429})) -> bool:
    """Whether ``exc`` (raised by one attempt) may be retried under the replay rule above."""
    if isinstance(exc, RetryableStatus):
        return replay_safe or exc.reply.status_code in refused
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True  # the request never left this machine
    if isinstance(exc, httpx.TransportError | IncompleteBody | RequestTimedOut):
        return replay_safe
    return False


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return exc.retry_after
        backoff = policy.backoff(state.attempt_number)
        return backoff + random.uniform(0.0, policy.jitter * backoff)

    return wait


def _seconds_left() -> float:
    """Seconds until the innermost cancel scope's deadline (infinite when there is none)."""
    try:
        deadline = anyio.current_effective_deadline()
        now = anyio.current_time()
    except RuntimeError:  # not inside an event loop: no deadline to honour
        return float("inf")
    return deadline - now


def _stop(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], bool]:
    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, RetryableStatus) else None
        if retry_after is not None and retry_after > policy.max_retry_after:
            return True
        wait = retry_after if retry_after is not None else policy.backoff(state.attempt_number)
        return wait >= _seconds_left()

    return stop


def _before_sleep(label: str) -> Callable[[tenacity.RetryCallState], None]:
    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _log.info("%s failed (%s); attempt %d, retrying in %.2fs", label, exc, state.attempt_number, wait)

    return log


def retry_kwargs(policy: RetryPolicy, *, replay_safe: bool, label: str) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.AsyncRetrying`` implementing ``policy``."""
    return {
        "retry": tenacity.retry_if_exception(
            lambda e: is_retryable(e, replay_safe=replay_safe, refused=policy.refused_statuses)
        ),
        "wait": _wait(policy),
        "stop": _stop(policy),
        "before_sleep": _before_sleep(label),
        "sleep": anyio.sleep,
        "reraise": True,
    }


