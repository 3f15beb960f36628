"""Toolkit for hosted-API plugins: one HTTP transport, the shared job lifecycle, and an emulator kit.

A hosted plugin is a small file on top of this:

* :class:`HostedSeparator` — the job lifecycle (submit → poll → resolve outputs → download → raw result),
  written once; a plugin supplies its API's particulars through a few hooks and inherits every guarantee
  (deadlines, bounded and confined downloads, one URL refresh, no exception groups).
* :class:`AsyncHostedTransport` (and its blocking face :class:`HostedTransport`) — httpx with the API key
  sent only under the base URL, one tenacity retry layer honoring ``Retry-After`` and the caller's deadline
  (:class:`RetryPolicy`), idempotency keys kept across retries, ``X-RateLimit-*`` parsing
  (:class:`RateLimitInfo`), bounded answers (:class:`Limits`), an ``error_mapper`` hook (:class:`ErrorContext`
  → a :mod:`stemkit.errors` error, :func:`default_error` as fallback), streamed uploads and atomic downloads.
* :class:`RateLimiter` and :func:`install_rate_limiter` — the hook that keeps many processes within one
  provider's rate limit (:mod:`stemkit.hosted.limiter`).
* :func:`poll_job` — wait for a job with a backoff honoring the provider's estimate, reporting progress.
* :class:`Secret` and :func:`read_key` — an API key that prints as ``***`` and is read safely.
* ``stemkit.hosted.emulator`` and ``stemkit.hosted.faults`` — serve an emulator on loopback, fault
  injection parsed from ``--fault`` strings (imported separately: they need the ``emulators`` extra).
"""

from stemkit.hosted._ratelimit import RateLimitInfo, parse_retry_after
from stemkit.hosted._retry import RetryPolicy
from stemkit.hosted.files import TransferProgress
from stemkit.hosted.jobs import JobSnapshot, JobState, PollOutcome, PollPolicy, StageReporter, poll_job
from stemkit.hosted.keys import ApiScope, Secret, read_key
from stemkit.hosted.lifecycle import HostedSeparator, Output, Submission, download_limit, require_outputs
from stemkit.hosted.limiter import RateLimiter, RateScope, install_rate_limiter, installed_rate_limiter, rate_limited
from stemkit.hosted.mapping import (
    ErrorContext,
    ErrorMapper,
    PresignedURLRejected,
    Reply,
    default_error,
    parse_answer,
    safe_url,
)
from stemkit.hosted.transport import AsyncHostedTransport, HostedTransport, Limits

__all__ = [
    "ApiScope",
    "AsyncHostedTransport",
    "ErrorContext",
    "ErrorMapper",
    "HostedSeparator",
    "HostedTransport",
    "JobSnapshot",
    "JobState",
    "Limits",
    "Output",
    "PollOutcome",
    "PollPolicy",
    "PresignedURLRejected",
    "RateLimitInfo",
    "RateLimiter",
    "RateScope",
    "Reply",
    "RetryPolicy",
    "Secret",
    "StageReporter",
    "Submission",
    "TransferProgress",
    "default_error",
    "download_limit",
    "install_rate_limiter",
    "installed_rate_limiter",
    "parse_answer",
    "parse_retry_after",
    "poll_job",
    "rate_limited",
    "read_key",
    "require_outputs",
    "safe_url",
]
