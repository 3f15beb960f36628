"""Toolkit for hosted-API plugins: one HTTP transport, a job lifecycle helper, and an emulator kit.

A hosted plugin is meant to be a small file on top of this:

* :class:`HostedTransport` / :class:`AsyncHostedTransport` — httpx with the API key sent only under the
  base URL, one tenacity retry layer honoring ``Retry-After`` (:class:`RetryPolicy`), idempotency keys
  kept across retries, ``X-RateLimit-*`` parsing (:class:`RateLimitInfo`), an ``error_mapper`` hook
  (:class:`ErrorContext` → a :mod:`stemkit.errors` error, :func:`default_error` as fallback), streamed
  uploads (raw PUT and multipart) and atomic streamed downloads.
* :func:`poll_job` / :func:`apoll_job` — wait for a job with a backoff honoring the provider's estimate,
  reporting progress, raising JobFailedError / JobExpiredError / SeparationTimeout.
* :class:`Secret` — an API key that prints as ``***``.
* ``stemkit.hosted.emulator`` and ``stemkit.hosted.faults`` — serve an emulator on loopback, fault
  injection parsed from ``--fault`` strings (imported separately: they need the ``emulators`` extra).
"""

from stemkit.hosted._ratelimit import RateLimitInfo, parse_retry_after
from stemkit.hosted._retry import RetryPolicy
from stemkit.hosted._secret import Secret
from stemkit.hosted.jobs import (
    JobSnapshot,
    JobState,
    PollOutcome,
    PollPolicy,
    StageReporter,
    apoll_job,
    poll_job,
)
from stemkit.hosted.transport import (
    AsyncHostedTransport,
    ErrorContext,
    ErrorMapper,
    HostedTransport,
    PresignedURLRejected,
    TransferProgress,
    default_error,
)

__all__ = [
    "AsyncHostedTransport",
    "ErrorContext",
    "ErrorMapper",
    "HostedTransport",
    "JobSnapshot",
    "JobState",
    "PollOutcome",
    "PollPolicy",
    "PresignedURLRejected",
    "RateLimitInfo",
    "RetryPolicy",
    "Secret",
    "StageReporter",
    "TransferProgress",
    "apoll_job",
    "default_error",
    "parse_retry_after",
    "poll_job",
]
